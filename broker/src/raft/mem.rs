//! An in-memory network between the Raft nodes of one process, with faults: for tests and the
//! deterministic simulation, never for serving.
//!
//! Messages go through the wire codec both ways (so the codec is exercised as on TCP), each
//! after a delay drawn from a seeded generator, so they reorder; a link can be cut in one
//! direction or both, and each message can be lost (its sender waits out its timeout, as over
//! a real network). With tokio's paused clock and one thread, a seed replays exactly.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::NodeId;
use super::codec::{
    RaftRequest, RaftResponse, decode_request, decode_response, encode_request, encode_response,
};
use super::network::{Groups, NetError, Router};

/// The faults every message meets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Chance that a message is lost (each way).
    pub loss: f64,
    /// Shortest delay of a message.
    pub delay_min: Duration,
    /// Longest delay of a message.
    pub delay_max: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.0,
            delay_min: Duration::ZERO,
            delay_max: Duration::from_millis(1),
        }
    }
}

struct State {
    nodes: HashMap<NodeId, Arc<Groups>>,
    /// Directed links that drop everything.
    cut: HashSet<(NodeId, NodeId)>,
    faults: Faults,
    rng: SmallRng,
    delivered: u64,
    lost: u64,
}

/// The network.
pub struct MemNetwork {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemNetwork")
    }
}

impl MemNetwork {
    /// A network whose faults draw from `seed`.
    pub fn new(seed: u64) -> Arc<MemNetwork> {
        Arc::new(MemNetwork {
            state: Mutex::new(State {
                nodes: HashMap::new(),
                cut: HashSet::new(),
                faults: Faults::default(),
                rng: SmallRng::seed_from_u64(seed),
                delivered: 0,
                lost: 0,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches a node: requests to it go to `groups`.
    pub fn attach(&self, node: NodeId, groups: Arc<Groups>) {
        self.state().nodes.insert(node, groups);
    }

    /// Detaches a node (it crashed): requests to it find no one.
    pub fn detach(&self, node: NodeId) {
        self.state().nodes.remove(&node);
    }

    /// Cuts the link from `a` to `b` and back.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut state = self.state();
        state.cut.insert((a, b));
        state.cut.insert((b, a));
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.state().cut.insert((from, to));
    }

    /// Cuts `node` off from every other node.
    pub fn isolate(&self, node: NodeId, others: &[NodeId]) {
        for &other in others {
            if other != node {
                self.cut(node, other);
            }
        }
    }

    /// Repairs every link.
    pub fn heal(&self) {
        self.state().cut.clear();
    }

    /// Sets the faults of every later message.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Messages delivered and lost so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.delivered, state.lost)
    }

    /// The router of node `from`.
    pub fn router(self: &Arc<Self>, from: NodeId) -> Arc<dyn Router> {
        Arc::new(MemRouter {
            network: self.clone(),
            from,
        })
    }

    /// Draws the fate of one message on the link `from` -> `to`: `None` if it is lost or the
    /// link is cut, else its delay.
    fn draw(&self, from: NodeId, to: NodeId) -> Option<Duration> {
        let mut state = self.state();
        if state.cut.contains(&(from, to)) {
            state.lost += 1;
            return None;
        }
        let faults = state.faults;
        if faults.loss > 0.0 && state.rng.random_bool(faults.loss.clamp(0.0, 1.0)) {
            state.lost += 1;
            return None;
        }
        state.delivered += 1;
        let (min, max) = (
            faults.delay_min.as_micros() as u64,
            faults.delay_max.as_micros() as u64,
        );
        let micros = if max > min {
            state.rng.random_range(min..=max)
        } else {
            min
        };
        Some(Duration::from_micros(micros))
    }
}

struct MemRouter {
    network: Arc<MemNetwork>,
    from: NodeId,
}

#[async_trait::async_trait]
impl Router for MemRouter {
    async fn call(
        &self,
        target: NodeId,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, NetError> {
        let lost = || NetError::Timeout {
            node: target,
            after: timeout,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let exchange = async {
            let Some(delay) = self.network.draw(self.from, target) else {
                // Lost on the way: the sender hears nothing until it gives up.
                tokio::time::sleep_until(deadline).await;
                return Err(lost());
            };
            tokio::time::sleep(delay).await;
            let groups = self.network.state().nodes.get(&target).cloned();
            let Some(groups) = groups else {
                return Err(NetError::Unreachable {
                    node: target,
                    reason: "connection refused".into(),
                });
            };
            let request =
                decode_request(encode_request(&request)).map_err(|e| NetError::Unreachable {
                    node: target,
                    reason: e.to_string(),
                })?;
            let response = groups.handle(request).await;
            let Some(delay) = self.network.draw(target, self.from) else {
                tokio::time::sleep_until(deadline).await;
                return Err(lost());
            };
            tokio::time::sleep(delay).await;
            decode_response(encode_response(&response)).map_err(|e| NetError::Unreachable {
                node: target,
                reason: e.to_string(),
            })
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(lost()),
        }
    }
}
