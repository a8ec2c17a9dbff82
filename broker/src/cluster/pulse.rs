//! One heartbeat per pair of nodes, whatever the number of partitions.
//!
//! A partition's Raft group would have its leader send a heartbeat to every follower every
//! interval, and every follower run an election timer: with thousands of partitions per node
//! that is thousands of timers and RPCs each tick. Instead (as Redpanda does) the nodes
//! heartbeat each other, and the groups hold no timers of their own (openraft's tick is off):
//!
//! - every [`Timing::heartbeat_ms`], each node sends each peer one *pulse*; now and then, or
//!   when it changed, the pulse carries the list of partitions the sender leads (group, term,
//!   in-sync replicas), which also tells nodes without a replica who the leaders are;
//! - a node is *alive* while pulses from it, or answers to ours, keep coming within the
//!   election timeout;
//! - a follower whose leader is not alive (or no longer claims the group) for the election
//!   timeout starts an election (with pre-vote, so a healthy leader is not deposed). The
//!   replicas that may stand go in their preferred order: the first alive one first, the
//!   next half a timeout later, so they rarely split the vote;
//! - a leader counts a follower in sync while it is alive and has caught up with the log
//!   within the replica lag time, and hands leadership back to the partition's preferred
//!   replica once that one is alive and caught up (Kafka's `auto.leader.rebalance`);
//! - a node that is shutting down says so in its pulses (it is *draining*): it hands every
//!   leadership it holds to a caught-up replica, stands in no election, and is handed none,
//!   so a rolling restart moves leaders ahead of the stop instead of waiting for a timeout.
//!
//! Log replication itself stays openraft's: entries go out as they are appended, and a
//! stream to a follower that was away retries until it gets through.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

use super::leaders::{self, Leaders};
use crate::controller::NodeRequest;
use crate::node::Node;
use crate::raft::group::Timing;
use crate::raft::{GroupId, NodeId};
use crate::replica::raft::RaftReplica;

/// How often a pulse carries the full list of what its sender leads.
const FULL_EVERY: Duration = Duration::from_secs(1);
/// How often a pulse carries where each of its sender's replicas starts (they move with
/// retention only).
const STARTS_EVERY: Duration = Duration::from_secs(5);
/// How long a leader keeps a leadership before it hands it back to the preferred replica.
const SETTLE_BEFORE_TRANSFER: Duration = Duration::from_secs(5);
/// Pulse rounds between two looks for partition moves to drive.
const MOVES_EVERY_TICKS: u64 = 6;
/// Most leaderships handed back per tick (they are spread over ticks).
const TRANSFERS_PER_TICK: usize = 8;

/// Which peers are alive, from the pulses heard.
#[derive(Debug)]
pub struct Liveness {
    me: NodeId,
    timeout: Duration,
    heard: RwLock<HashMap<NodeId, Instant>>,
    draining: RwLock<HashSet<NodeId>>,
}

impl Liveness {
    /// Liveness as seen by node `me`: a peer is alive if heard within `timeout`.
    pub fn new(me: NodeId, timeout: Duration) -> Liveness {
        Liveness {
            me,
            timeout,
            heard: RwLock::default(),
            draining: RwLock::default(),
        }
    }

    /// Notes whether `node` said it is draining (shutting down).
    pub fn set_draining(&self, node: NodeId, draining: bool) {
        let mut set = self.draining.write().unwrap_or_else(|p| p.into_inner());
        if draining {
            set.insert(node);
        } else {
            set.remove(&node);
        }
    }

    /// True if `node` is alive and not draining: one to hand a leadership to.
    pub fn available(&self, node: NodeId) -> bool {
        self.alive(node)
            && !self
                .draining
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&node)
    }

    /// Notes that `node` was heard from just now.
    pub fn heard(&self, node: NodeId) {
        self.heard
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node, Instant::now());
    }

    /// How long a peer may go unheard and still count as alive.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long ago this node last heard from a majority of `voters` (itself counted as
    /// heard now); `None` if it has not heard from a majority yet (it is starting).
    pub fn majority_heard_ago(&self, voters: &[NodeId]) -> Option<Duration> {
        let heard = self.heard.read().unwrap_or_else(|p| p.into_inner());
        let mut ages: Vec<Duration> = voters
            .iter()
            .filter_map(|v| {
                if *v == self.me {
                    Some(Duration::ZERO)
                } else {
                    heard.get(v).map(Instant::elapsed)
                }
            })
            .collect();
        ages.sort_unstable();
        ages.get(voters.len() / 2).copied()
    }

    /// True if `node` is this node or was heard from within the timeout.
    pub fn alive(&self, node: NodeId) -> bool {
        node == self.me
            || self
                .heard
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&node)
                .is_some_and(|at| at.elapsed() <= self.timeout)
    }

    /// Each peer heard from and how long ago.
    pub fn peers(&self) -> Vec<(NodeId, Duration)> {
        let mut peers: Vec<(NodeId, Duration)> = self
            .heard
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(node, at)| (*node, at.elapsed()))
            .collect();
        peers.sort_unstable();
        peers
    }
}

/// A replica the pulse looks after.
#[derive(Debug)]
struct Watched {
    replica: Weak<RaftReplica>,
    /// Replicas in preferred order (the first is the preferred leader).
    preferred: Vec<NodeId>,
    /// Since when this follower has seen no healthy leader.
    leaderless_since: Option<Instant>,
    /// When this node last stood for election in the group.
    stood_at: Option<Instant>,
    /// Since when this node leads the group.
    leading_since: Option<Instant>,
    /// Hand-overs tried while draining (each goes to the next candidate).
    drain_tries: usize,
}

/// Counts of what the pulse did, for `/metrics`.
#[derive(Debug, Default)]
pub struct PulseCounters {
    /// Pulses sent.
    pub sent: AtomicU64,
    /// Pulses that got no answer in time.
    pub missed: AtomicU64,
    /// Elections this node stood in.
    pub elections: AtomicU64,
    /// Leaderships handed back to preferred replicas.
    pub transfers: AtomicU64,
}

/// Node-level heartbeats, failure detection and leader elections for the partitions here.
#[derive(Debug)]
pub struct Pulse {
    me: NodeId,
    timing: Timing,
    /// Who is alive.
    pub liveness: Arc<Liveness>,
    watched: Mutex<HashMap<GroupId, Watched>>,
    /// What happened.
    pub counters: PulseCounters,
    in_flight: Mutex<HashMap<NodeId, Arc<AtomicBool>>>,
    /// This node is shutting down.
    draining: AtomicBool,
    /// Uploads to the archive under way (a hand-over lets them finish first).
    pub uploads: Arc<super::uploads::Uploads>,
    /// Where each peer's replica of each group starts, as its pulses last said.
    starts: Mutex<HashMap<GroupId, BTreeMap<NodeId, i64>>>,
}

impl Pulse {
    /// The pulse of node `me`.
    pub fn new(me: NodeId, timing: Timing) -> Pulse {
        Pulse {
            me,
            timing,
            liveness: Arc::new(Liveness::new(
                me,
                Duration::from_millis(timing.election_min_ms),
            )),
            watched: Mutex::default(),
            counters: PulseCounters::default(),
            in_flight: Mutex::default(),
            draining: AtomicBool::new(false),
            uploads: Arc::default(),
            starts: Mutex::default(),
        }
    }

    /// Records where `from`'s replicas start: all it holds, so a group missing from
    /// `starts` is one it no longer holds.
    pub fn heard_starts(&self, from: NodeId, starts: &[(u64, i64)]) {
        let mut known = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        for replicas in known.values_mut() {
            replicas.remove(&from);
        }
        for (group, start) in starts {
            known.entry(*group).or_default().insert(from, *start);
        }
        known.retain(|_, replicas| !replicas.is_empty());
    }

    /// Where the peers' replicas of `group` start (local log start offsets), as last heard.
    pub fn replica_starts(&self, group: GroupId) -> BTreeMap<NodeId, i64> {
        self.starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
            .unwrap_or_default()
    }

    /// Starts draining: from the next round on, this node hands its leaderships over.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.liveness.set_draining(self.me, true);
    }

    /// True while this node drains.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Looks after `replica` of `group`, whose replicas in preferred order are `preferred`.
    pub fn watch(&self, group: GroupId, replica: &Arc<RaftReplica>, preferred: Vec<NodeId>) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                group,
                Watched {
                    replica: Arc::downgrade(replica),
                    preferred,
                    leaderless_since: None,
                    stood_at: None,
                    leading_since: None,
                    drain_tries: 0,
                },
            );
    }

    /// Stops looking after `group` (its replica closed).
    pub fn unwatch(&self, group: GroupId) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group);
    }

    /// Groups looked after.
    pub fn watched(&self) -> usize {
        self.watched.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Records a pulse from `from` (and the leaderships it carried, if it did).
    pub fn heard(
        &self,
        from: NodeId,
        leads: Option<&[leaders::Lead]>,
        draining: bool,
        claims: &Leaders,
    ) {
        self.liveness.heard(from);
        self.liveness.set_draining(from, draining);
        if let Some(leads) = leads {
            claims.heard_all(from as i32, leads);
        }
    }

    /// How long after it finds a group without a healthy leader this node waits before it
    /// stands: the first alive preferred replica at once, each next one half an election
    /// timeout more. (Finding a leader dead already took the election timeout: that is
    /// when liveness gives up on it.)
    fn standing_delay(&self, preferred: &[NodeId], voters: &[NodeId], group: GroupId) -> Duration {
        let rank = preferred
            .iter()
            .filter(|n| voters.contains(n) && self.liveness.available(**n))
            .position(|n| *n == self.me)
            .unwrap_or(preferred.len()) as u64;
        let base = self.timing.election_min_ms;
        // A little spread per group, so a node standing in many groups does not send every
        // vote request at the same instant.
        let spread = group % self.timing.heartbeat_ms.max(1);
        Duration::from_millis(rank * base / 2 + spread)
    }

    /// One round over the groups here: elections where the leader is gone, in-sync
    /// tracking and leadership hand-backs where this node leads.
    async fn drive(&self, claims: &Leaders) {
        let now = Instant::now();
        let mut elect = Vec::new();
        let mut transfer = Vec::new();
        {
            let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            watched.retain(|_, w| w.replica.strong_count() > 0);
            for (group, w) in watched.iter_mut() {
                let Some(replica) = w.replica.upgrade() else {
                    continue;
                };
                let raft = replica.handle().raft.clone();
                let metrics = raft.metrics();
                let metrics = metrics.borrow_watched();
                let voters: Vec<NodeId> =
                    metrics.membership_config.membership().voter_ids().collect();
                if metrics.state == ServerState::Leader {
                    w.leaderless_since = None;
                    let since = *w.leading_since.get_or_insert(now);
                    replica.observe_followers(&metrics, &self.liveness);
                    // Notes where this leadership starts, early (offset queries wait until
                    // its high watermark has passed it).
                    replica.note_leading(&metrics);
                    if transfer.len() >= TRANSFERS_PER_TICK {
                        continue;
                    }
                    // In sync is close enough: openraft stops taking writes for the
                    // transfer and the new leader waits until it holds the whole log.
                    let in_sync = replica.in_sync_of(&metrics);
                    let target = if self.is_draining() {
                        // Anyone in sync will do, the preferred first; a hand-over that has
                        // not happened after an election timeout goes to the next one.
                        let candidates: Vec<NodeId> = w
                            .preferred
                            .iter()
                            .copied()
                            .filter(|n| {
                                *n != self.me
                                    && voters.contains(n)
                                    && self.liveness.available(*n)
                                    && in_sync.contains(n)
                            })
                            .collect();
                        let waited = w.leading_since.is_none_or(|at| {
                            now.duration_since(at)
                                >= Duration::from_millis(self.timing.election_min_ms)
                        });
                        if candidates.is_empty() || !waited {
                            None
                        } else {
                            w.drain_tries += 1;
                            Some(candidates[(w.drain_tries - 1) % candidates.len()])
                        }
                    } else {
                        w.preferred.first().copied().filter(|to| {
                            *to != self.me
                                && voters.contains(to)
                                && self.liveness.available(*to)
                                && now.duration_since(since) >= SETTLE_BEFORE_TRANSFER
                                && in_sync.contains(to)
                        })
                    };
                    if let Some(to) = target {
                        w.leading_since = Some(now);
                        transfer.push((*group, raft.clone(), to));
                    }
                    continue;
                }
                w.leading_since = None;
                if !voters.contains(&self.me) || self.is_draining() {
                    continue;
                }
                let term = metrics.current_term;
                let healthy = |leader: NodeId| {
                    leader != self.me
                        && self.liveness.alive(leader)
                        && claims
                            .get(*group)
                            .is_some_and(|c| c.leader as NodeId == leader && c.epoch as u64 >= term)
                };
                let claimed = claims.get(*group).map(|c| c.leader as NodeId);
                let led =
                    metrics.current_leader.is_some_and(healthy) || claimed.is_some_and(healthy);
                if led {
                    w.leaderless_since = None;
                    continue;
                }
                let since = *w.leaderless_since.get_or_insert(now);
                let delay = self.standing_delay(&w.preferred, &voters, *group);
                let rested = w.stood_at.is_none_or(|at| {
                    now.duration_since(at) >= Duration::from_millis(self.timing.election_max_ms)
                });
                if now.duration_since(since) >= delay && rested {
                    w.stood_at = Some(now);
                    elect.push((*group, raft.clone()));
                }
            }
        }
        for (group, raft) in elect {
            tracing::debug!(group, "no healthy leader: standing for election");
            self.counters.elections.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = raft.trigger().elect(true).await {
                tracing::debug!(group, error = %e, "could not stand for election");
            }
        }
        for (group, raft, to) in transfer {
            if self.uploads.handing_over(group) {
                continue;
            }
            tracing::debug!(
                group,
                to,
                "handing leadership back to the preferred replica"
            );
            self.counters.transfers.fetch_add(1, Ordering::Relaxed);
            // An upload in flight finishes first; waiting must not hold up the other groups.
            let uploads = self.uploads.clone();
            tokio::spawn(async move {
                let _hand_over = uploads
                    .hand_over(group, super::uploads::HAND_OVER_WAIT)
                    .await;
                // A heartbeat first: a follower that missed entries of an idle group hears
                // of them now, and the new leader waits only for those before it takes over.
                let _ = raft.trigger().heartbeat().await;
                if let Err(e) = raft.trigger().transfer_leader(to).await {
                    tracing::debug!(group, error = %e, "could not hand leadership back");
                }
            });
        }
    }

    /// Sends one pulse to each peer (skipping a peer whose last pulse is still unanswered).
    fn send(
        self: &Arc<Self>,
        node: &Node,
        peers: &[NodeId],
        leads: Option<Vec<leaders::Lead>>,
        starts: Option<Vec<(u64, i64)>>,
    ) {
        let request = NodeRequest::Pulse {
            leads,
            draining: self.is_draining(),
            starts,
        };
        let bytes = serde_json::to_vec(&request).expect("requests serialise");
        let timeout = Duration::from_millis(self.timing.election_min_ms);
        for peer in peers {
            let flag = self
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(*peer)
                .or_default()
                .clone();
            if flag.swap(true, Ordering::AcqRel) {
                continue;
            }
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            let (transport, bytes, pulse, peer) = (
                node.cluster.transport.clone(),
                bytes.clone(),
                self.clone(),
                *peer,
            );
            tokio::spawn(async move {
                match transport.node_request(peer, &bytes, timeout).await {
                    Ok(_) => pulse.liveness.heard(peer),
                    Err(_) => {
                        pulse.counters.missed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                flag.store(false, Ordering::Release);
            });
        }
    }
}

/// Runs the pulse of `node` until `stop`: pulses out every heartbeat interval, and a round
/// of [`Pulse::drive`] after each.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let pulse = node.cluster.pulse.clone();
    let interval = Duration::from_millis(pulse.timing.heartbeat_ms.max(10));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_leads: Option<Vec<leaders::Lead>> = None;
    let mut last_full = Instant::now() - FULL_EVERY;
    let mut last_starts: Option<(Vec<(u64, i64)>, Instant)> = None;
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            _ = ticker.tick() => {}
        }
        let me = node.cluster.node_id;
        let peers: Vec<NodeId> = node
            .cluster
            .controller
            .state()
            .brokers
            .keys()
            .filter(|id| **id != me)
            .map(|id| *id as NodeId)
            .collect();
        if !peers.is_empty() {
            let leads = leaders::leads(&node);
            let full = last_leads.as_ref() != Some(&leads) || last_full.elapsed() >= FULL_EVERY;
            if full {
                last_full = Instant::now();
                last_leads = Some(leads.clone());
            }
            let starts = leaders::local_starts(&node);
            let send_starts = last_starts
                .as_ref()
                .is_none_or(|(last, at)| *last != starts || at.elapsed() >= STARTS_EVERY);
            if send_starts {
                last_starts = Some((starts.clone(), Instant::now()));
            }
            pulse.send(
                &node,
                &peers,
                full.then_some(leads),
                send_starts.then_some(starts),
            );
        }
        pulse.drive(&node.cluster.leaders).await;
        ticks += 1;
        // Moves are slow work: look for new ones about once a second.
        if ticks.is_multiple_of(MOVES_EVERY_TICKS) {
            super::reassign::tick(&node);
        }
    }
}

/// Drains this node before it stops: hands every leadership it holds (partitions and the
/// controller) to another replica and waits, at most `timeout`, until it leads nothing. The
/// pulse keeps running meanwhile (it does the handing over).
pub async fn drain(node: &Node, timeout: Duration) {
    let pulse = &node.cluster.pulse;
    pulse.drain();
    let started = Instant::now();
    tracing::info!(
        partitions = leaders::leads(node).len(),
        "draining: handing leaderships over before stopping"
    );
    let controller = node.cluster.controller.group().raft.clone();
    loop {
        let leads = leaders::leads(node).len();
        let controller_metrics = controller.metrics().borrow_watched().clone();
        let leads_controller = controller_metrics.state == ServerState::Leader;
        if leads_controller {
            let to = controller_metrics
                .membership_config
                .membership()
                .voter_ids()
                .find(|v| *v != pulse.me && pulse.liveness.available(*v));
            if let Some(to) = to {
                let _ = controller.trigger().transfer_leader(to).await;
            }
        }
        let takers = pulse
            .liveness
            .peers()
            .iter()
            .any(|(peer, _)| *peer != pulse.me && pulse.liveness.available(*peer));
        if !takers && (leads > 0 || leads_controller) {
            tracing::info!(
                partitions = leads,
                controller = leads_controller,
                "no other node can take over; stopping without a hand-over"
            );
            return;
        }
        if leads == 0 && !leads_controller {
            tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                "drained: this node leads nothing"
            );
            return;
        }
        if started.elapsed() >= timeout {
            let groups: Vec<u64> = leaders::leads(node).iter().map(|l| l.0).collect();
            tracing::warn!(
                partitions = leads,
                ?groups,
                controller = leads_controller,
                "still leading after the drain timeout; stopping anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(pulse.timing.heartbeat_ms.max(50))).await;
    }
}
