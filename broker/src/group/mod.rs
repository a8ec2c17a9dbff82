//! Consumer groups: the classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup),
//! the consumer group protocol of KIP-848 (ConsumerGroupHeartbeat), and committed offsets,
//! kept in silt's own log.
//!
//! - [`state`]: one group's sans-io state machine (classic protocol).
//! - [`consumer`]: the KIP-848 protocol's sans-io state machine, assignors included.
//! - [`migration`]: classic members of a group upgraded to the KIP-848 protocol.
//! - [`store`]: the group log (records, replay, compaction).
//! - [`coordinator`]: the shell that runs the state machines, parks waiting requests and
//!   persists.

pub mod consumer;
mod consumer_coordinator;
pub mod coordinator;
pub mod migration;
pub mod state;
pub mod store;
mod txn_records;

pub use coordinator::{GroupCoordinator, OffsetCommit};
pub use state::{GroupConfig, GroupState};
