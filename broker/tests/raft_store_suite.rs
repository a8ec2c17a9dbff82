//! openraft's storage conformance suite, run against silt's Raft log store (the segment files
//! of a replicated partition) and state machine.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use silt_broker::log::{DiskStorage, LogConfig, PartitionLog, Storage, SystemClock};
use silt_broker::raft::TypeConfig;
use silt_broker::raft::store::{LogStore, PartitionApplication, StateMachine};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(DiskStorage);
        let config = LogConfig {
            segment_bytes: 4096,
            preallocate_bytes: 4096,
            ..LogConfig::default()
        };
        let log = Arc::new(
            PartitionLog::open_replicated(
                storage.clone(),
                dir.path(),
                config,
                Arc::new(SystemClock),
                &tokio::runtime::Handle::current(),
            )
            .unwrap(),
        );
        let store = LogStore::new(log.clone(), storage.clone());
        let sm = StateMachine::open(log, storage, Arc::new(PartitionApplication)).unwrap();
        Ok((dir, store, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_conformance_suite() {
    Suite::test_all(Builder).await.unwrap();
}
