//! Deterministic simulation of the replication core: three replicas of a partition (openraft
//! over the segment files), on one thread with tokio's paused clock, over the in-memory
//! network (loss, delay and so reordering, cut links) and simulated disks that lose what was
//! not fsynced when a node crashes. Every random choice, the network's and openraft's own
//! election timeouts included, comes from the seed, so a failing seed replays exactly:
//!
//! ```text
//! SILT_SIM_SEED=1234 cargo test -p silt-broker --test raft_sim
//! ```
//!
//! `SILT_SIM_SEEDS` sets how many seeds a run tries (default 200: 40 s of a debug build, with
//! openraft's own invariant checks on; `./test.sh` then runs 2,000 more on a release build,
//! 15 s; `bench/raft-sim.sh` runs as many as asked);
//! `SILT_SIM_FIRST` where they start. Checked, for every seed:
//! - no batch acknowledged as committed is lost, and each sits at the offset it was
//!   acknowledged at;
//! - once healed, every replica holds the same log (so committed prefixes agree);
//! - the high watermark a replica shows never goes back while it runs;
//! - at most one leader per term;
//! - offsets are dense and unique: entry k of the log holds offset k, no value twice;
//! - Raft forgets only what the (simulated) archive holds: now and then the leader's high
//!   watermark is taken as archived, every replica that applied that far snapshots there and
//!   purges, so a replica behind it installs the snapshot and copies only the rest; once
//!   healed, every acknowledged write is in some replica's log or below the archive pointer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{InitializeError, RaftError};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use silt_broker::log::sim::SimStorage;
use silt_broker::raft::NodeId;
use silt_broker::raft::group::Timing;
use silt_broker::raft::mem::{Faults, MemNetwork};

mod raft_nodes;
use raft_nodes::{Node, entries, start_node, write_data};

const TIMING: Timing = Timing {
    heartbeat_ms: 50,
    election_min_ms: 300,
    election_max_ms: 600,
    driven: false,
};
const IDS: [NodeId; 3] = [1, 2, 3];
/// Fault and write steps per seed.
const STEPS: usize = 30;

/// What the clients were told and what the observers saw, shared with the write tasks.
#[derive(Default)]
struct Seen {
    /// value -> offset, for every write acknowledged as committed.
    acked: HashMap<String, i64>,
    /// term -> the node that led it.
    leaders: HashMap<u64, NodeId>,
}

struct Sim {
    seed: u64,
    rng: SmallRng,
    net: Arc<MemNetwork>,
    disks: BTreeMap<NodeId, SimStorage>,
    nodes: BTreeMap<NodeId, Node>,
    /// Highest high watermark each running replica showed (reset when it restarts).
    high_watermarks: HashMap<NodeId, i64>,
    seen: Arc<Mutex<Seen>>,
    written: u64,
    /// What the simulated archive holds: every offset below this.
    archived: i64,
}

impl Sim {
    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {}: {what}\nreplay: SILT_SIM_SEED={} cargo test -p silt-broker --test raft_sim",
            self.seed, self.seed
        )
    }

    /// Notes each running replica's role and high watermark, checking the invariants that
    /// hold at every moment.
    fn observe(&mut self) {
        for (id, node) in &self.nodes {
            let metrics = node.handle.raft.metrics().borrow_watched().clone();
            if metrics.state == ServerState::Leader {
                let mut seen = self.seen.lock().unwrap();
                let leader = *seen.leaders.entry(metrics.current_term).or_insert(*id);
                if leader != *id {
                    drop(seen);
                    self.fail(format!(
                        "two leaders in term {}: {leader} and {id}",
                        metrics.current_term
                    ));
                }
            }
            let hw = node.handle.log.high_watermark();
            let before = self.high_watermarks.entry(*id).or_insert(hw);
            if hw < *before {
                let before = *before;
                self.fail(format!(
                    "node {id}: high watermark went back from {before} to {hw}"
                ));
            }
            *self.high_watermarks.get_mut(id).unwrap() = hw;
        }
    }

    /// A node that believes it leads, if any.
    fn a_leader(&self) -> Option<&Node> {
        self.nodes.values().find(|n| {
            let m = n.handle.raft.metrics().borrow_watched().clone();
            m.state == ServerState::Leader
        })
    }

    /// Sends one value through whichever node leads (or a random one), without waiting: the
    /// task records it once it is committed.
    async fn write(&mut self) {
        let target = match self.a_leader() {
            Some(n) => n.id,
            None => IDS[self.rng.random_range(0..IDS.len())],
        };
        let Some(node) = self.nodes.get(&target) else {
            return;
        };
        self.written += 1;
        let tag = format!("v{}", self.written);
        let (data, written_rx) = write_data(&tag);
        let (responder, complete_rx) = openraft::impls::ProgressResponder::complete_only();
        if node
            .handle
            .raft
            .client_write_ff(data, Some(responder))
            .await
            .is_err()
        {
            return;
        }
        let seen = self.seen.clone();
        tokio::spawn(async move {
            let Ok(appended) = written_rx.await else {
                return;
            };
            if let Ok(Ok(_)) = complete_rx.await {
                seen.lock().unwrap().acked.insert(tag, appended.base_offset);
            }
        });
    }

    /// The leader's committed log is archived: every replica that applied that far learns
    /// the pointer (as from the entry the leader replicates) and forgets up to it.
    fn archive(&mut self) {
        let Some(leader) = self.a_leader() else {
            return;
        };
        let pointer = leader.handle.log.high_watermark();
        self.archived = self.archived.max(pointer);
        for node in self.nodes.values() {
            let log = node.handle.log.clone();
            if log.high_watermark() < pointer {
                continue;
            }
            log.note_archived(pointer);
            let raft = node.handle.raft.clone();
            tokio::spawn(async move {
                let _ = silt_broker::replica::raft::forget_archived(&raft, &log, pointer).await;
            });
        }
    }

    async fn crash(&mut self, id: NodeId) {
        let Some(node) = self.nodes.remove(&id) else {
            return;
        };
        self.net.detach(id);
        let _ = node.handle.raft.shutdown().await;
        node.storage.power_cut();
        self.high_watermarks.remove(&id);
    }

    async fn restart(&mut self, id: NodeId) {
        if self.nodes.contains_key(&id) {
            return;
        }
        let disk = self.disks[&id].after_reboot();
        self.disks.insert(id, disk.clone());
        let node = start_node(&self.net, id, disk, TIMING).await;
        self.nodes.insert(id, node);
    }

    async fn step(&mut self) {
        let id = IDS[self.rng.random_range(0..IDS.len())];
        match self.rng.random_range(0..100) {
            0..40 => {
                for _ in 0..self.rng.random_range(1..6) {
                    self.write().await;
                }
            }
            40..45 => self.archive(),
            45..55 => self.crash(id).await,
            55..70 => self.restart(id).await,
            70..78 => {
                let others: Vec<NodeId> = IDS.iter().copied().filter(|o| *o != id).collect();
                self.net.isolate(id, &others);
            }
            78..84 => {
                let other = IDS[self.rng.random_range(0..IDS.len())];
                if other != id {
                    self.net.cut_one_way(id, other);
                }
            }
            84..92 => self.net.heal(),
            _ => {
                let loss = [0.0, 0.02, 0.1, 0.3][self.rng.random_range(0..4)];
                let delay_max = Duration::from_millis(self.rng.random_range(1..40));
                self.net.set_faults(Faults {
                    loss,
                    delay_min: Duration::ZERO,
                    delay_max,
                });
            }
        }
        let pause = Duration::from_millis(self.rng.random_range(5..500));
        let deadline = tokio::time::Instant::now() + pause;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
            self.observe();
        }
    }

    /// Heals everything, restarts every node and waits until their logs agree and a leader
    /// has committed its whole log.
    async fn settle(&mut self) {
        self.net.heal();
        self.net.set_faults(Faults::default());
        for id in IDS {
            self.restart(id).await;
        }
        for _ in 0..2400 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            self.observe();
            // Cheap first: every replica has applied the same last entry.
            let ends: Vec<_> = IDS
                .iter()
                .map(|id| {
                    let m = self.nodes[id]
                        .handle
                        .raft
                        .metrics()
                        .borrow_watched()
                        .clone();
                    (m.last_log_index, m.last_applied.map(|a| a.index))
                })
                .collect();
            if ends.windows(2).any(|w| w[0] != w[1]) || ends[0].0 != ends[0].1 {
                continue;
            }
            // A replica that installed a snapshot holds the log from there on.
            let logs: Vec<_> = IDS.iter().map(|id| entries(&self.nodes[id])).collect();
            let first = IDS
                .iter()
                .map(|id| self.nodes[id].handle.log.raft_first_index())
                .max()
                .unwrap_or(0);
            let logs: Vec<Vec<_>> = logs
                .into_iter()
                .map(|l| l.into_iter().filter(|e| e.index >= first).collect())
                .collect();
            let same = logs.windows(2).all(|w| w[0] == w[1]);
            let committed = self.a_leader().is_some_and(|l| {
                let m = l.handle.raft.metrics().borrow_watched().clone();
                m.last_applied.map(|a| a.index) == m.last_log_index
                    && m.last_log_index.is_some_and(|i| {
                        m.last_applied
                            .is_some_and(|a| a.leader_id.term == m.current_term)
                            || i > 0
                    })
            });
            if same && committed {
                return;
            }
        }
        let lens: Vec<usize> = IDS
            .iter()
            .map(|id| entries(&self.nodes[id]).len())
            .collect();
        self.fail(format!(
            "the replicas did not converge once healed: log lengths {lens:?}"
        ));
    }

    fn check(&self) {
        // The replica holding the longest log (one that installed no snapshot since the
        // archive moved may hold it all).
        let (start, log) = IDS
            .iter()
            .map(|id| {
                let node = &self.nodes[id];
                (node.handle.log.raft_first_index(), entries(node))
            })
            .min_by_key(|(first, _)| *first)
            .unwrap_or_default();
        let start = start as i64;
        let mut values = BTreeSet::new();
        for entry in &log {
            // Each entry takes one offset: entry k holds offset k.
            if let Some(offset) = entry.offset
                && offset != entry.index as i64
            {
                self.fail(format!("entry {} holds offset {offset}", entry.index));
            }
            if let Some(value) = &entry.value
                && !values.insert(value.clone())
            {
                self.fail(format!("{value} is in the log twice"));
            }
        }
        let at: HashMap<&str, i64> = log
            .iter()
            .filter_map(|e| Some((e.value.as_deref()?, e.offset?)))
            .collect();
        if start > self.archived.max(0) {
            self.fail(format!(
                "every replica forgot offsets up to {start}, the archive holds only up to {}",
                self.archived
            ));
        }
        let seen = self.seen.lock().unwrap();
        for (value, offset) in &seen.acked {
            match at.get(value.as_str()) {
                // Forgotten by every replica: the archive holds it.
                None if *offset < start => {}
                Some(found) if found == offset => {}
                Some(found) => self.fail(format!(
                    "{value} was acknowledged at {offset} and is at {found}"
                )),
                None => self.fail(format!("{value}, acknowledged at {offset}, is lost")),
            }
        }
        // The high watermark covers every acknowledged write on the settled leader.
        if let Some(leader) = self.a_leader() {
            let hw = leader.handle.log.high_watermark();
            if let Some(max) = seen.acked.values().max()
                && hw <= *max
            {
                self.fail(format!(
                    "high watermark {hw} below acknowledged offset {max}"
                ));
            }
        }
    }
}

/// Runs one seed; returns how many writes were acknowledged (to check the run did work) and
/// how many replicas ended on a log rebuilt from a snapshot.
fn run_seed(seed: u64) -> (usize, usize) {
    silt_broker::raft::runtime::seed(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let simulated_start = tokio::time::Instant::now();
        let net = MemNetwork::new(seed);
        let mut sim = Sim {
            seed,
            rng: SmallRng::seed_from_u64(seed),
            net: net.clone(),
            disks: BTreeMap::new(),
            nodes: BTreeMap::new(),
            high_watermarks: HashMap::new(),
            seen: Arc::default(),
            written: 0,
            archived: -1,
        };
        for id in IDS {
            let disk = SimStorage::new(seed.wrapping_mul(31).wrapping_add(id));
            sim.disks.insert(id, disk.clone());
            sim.nodes.insert(id, start_node(&net, id, disk, TIMING).await);
        }
        let members: BTreeSet<NodeId> = IDS.into_iter().collect();
        for id in IDS {
            match sim.nodes[&id].handle.raft.initialize(members.clone()).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => sim.fail(format!("initialize: {e}")),
            }
        }
        for _ in 0..STEPS {
            sim.step().await;
        }
        sim.settle().await;
        // Writes after the faults must go through, and count like the others.
        for _ in 0..5 {
            sim.write().await;
        }
        sim.settle().await;
        sim.check();
        let acked = sim.seen.lock().unwrap().acked.len();
        // Replicas whose log was replaced by an installed snapshot (the sim never drops
        // purged segments, so nothing else moves a local log start).
        let rebuilt = sim
            .nodes
            .values()
            .filter(|n| n.handle.log.log_start_offset() > 0)
            .count();
        if std::env::var("SILT_SIM_SEED").is_ok() {
            let log = entries(&sim.nodes[&IDS[0]]);
            let (delivered, lost) = net.counts();
            eprintln!(
                "seed {seed}: {} entries, last {:?}; {delivered} messages delivered, {lost} lost; {:.1}s simulated",
                log.len(),
                log.last(),
                simulated_start.elapsed().as_secs_f64()
            );
        }
        for node in sim.nodes.values() {
            let _ = node.handle.raft.shutdown().await;
        }
        (acked, rebuilt)
    })
}

#[test]
fn replication_survives_seeded_faults() {
    let seeds: Vec<u64> = match std::env::var("SILT_SIM_SEED") {
        Ok(one) => {
            // One seed replayed: its story, as `RUST_LOG` asks (e.g. `silt_broker=debug`).
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
            vec![one.parse().expect("SILT_SIM_SEED is a number")]
        }
        Err(_) => {
            let count: u64 = std::env::var("SILT_SIM_SEEDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            let first: u64 = std::env::var("SILT_SIM_FIRST")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            (first..first + count).collect()
        }
    };
    let started = std::time::Instant::now();
    let mut acked = 0;
    let mut rebuilt = 0;
    for seed in &seeds {
        let took = std::time::Instant::now();
        let (n, r) = run_seed(*seed);
        rebuilt += r;
        if seeds.len() == 1 {
            eprintln!(
                "seed {seed}: {n} acknowledged writes, {:.2}s",
                took.elapsed().as_secs_f64()
            );
        }
        acked += n;
    }
    eprintln!(
        "{} seeds, {acked} acknowledged writes checked, {rebuilt} replicas rebuilt from a snapshot, in {:.1}s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        acked > seeds.len(),
        "the runs acknowledged almost nothing: {acked}"
    );
}
