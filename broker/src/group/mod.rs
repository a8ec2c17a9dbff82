//! Consumer groups: the classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup)
//! and committed offsets, kept in silt's own log.
//!
//! - [`state`]: one group's sans-io state machine.
//! - [`store`]: the group log (records, replay, compaction).
//! - [`coordinator`]: the shell that runs the state machines, parks waiting requests and
//!   persists.

pub mod coordinator;
pub mod state;
pub mod store;
mod txn_records;

pub use coordinator::{GroupCoordinator, OffsetCommit};
pub use state::{GroupConfig, GroupState};
