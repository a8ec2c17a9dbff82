//! silt's broker: a Kafka protocol server over partition logs on local disk.
//!
//! # Layout
//!
//! - [`log`]: one partition's local log: segments, group commit, recovery, retention
//!   primitives. Its I/O goes through [`log::Storage`], so tests can cut the power.
//! - [`protocol`]: framing, request parsing, the versions silt speaks, Kafka error codes. No I/O.
//! - [`handlers`]: one file per Kafka API, from a decoded request to a response.
//! - [`group`]: consumer groups: the group protocol and committed offsets in silt's own log.
//! - [`topics`]: topics and partitions on this node, kept in `<data>/topics`.
//! - [`partition`]: one partition as clients see it: bounds and reads across tiers.
//! - [`replica`]: the replicated-log seam: leadership, acks and the high watermark.
//! - [`raft`]: openraft over replicated partition logs: types, log store, state machine.
//! - [`node`]: the node's identity, settings, producer ids and counters.
//! - [`retention`]: which segments expire, and the task that deletes them.
//! - `compaction`: the compactor thread that runs [`log::compactor`] passes over compacted
//!   topics.
//! - [`tiering`]: sealed segments to the archive, archive retention, what local retention may
//!   delete.
//! - [`metrics`]: counters and their Prometheus text.
//! - [`security`]: listeners' TLS and SASL, SCRAM users, ACLs and the authorizer.
//! - [`server`]: the tokio shell: listeners, connections, admin HTTP, shutdown.
//!
//! ```no_run
//! # async fn run() -> Result<(), silt_broker::server::ServerError> {
//! let server = silt_broker::server::Server::bind(silt_config::NodeConfig::default()).await?;
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod archive_verify;
pub mod cluster;
mod compaction;
pub mod controller;
pub mod dr;
pub mod group;
pub mod handlers;
pub mod log;
pub mod metrics;
pub mod node;
pub mod partition;
pub mod protocol;
pub mod raft;
pub mod replica;
pub mod retention;
pub mod security;
pub mod server;
pub mod tiering;
pub mod topics;
pub mod txn;
