//! openraft's own storage test suite on our log store and state machine. Breaks if the log
//! store or the state machine departs from openraft 0.9's storage contract (log state, vote,
//! purge, truncate, applied state, snapshot meta, snapshot install).

mod support;

use deltasnap_raft::{LogStore, NodeId, PurgeGuard, StateMachineStore, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let vfs = support::std_fs();
        // The suite purges with no snapshot at all: the RA3 guard is off here (and only here).
        let state_machine = StateMachineStore::open(
            vfs.clone(),
            &dir.path().join("sm"),
            support::engine_config(),
            PurgeGuard::unguarded(),
        )
        .expect("open the state machine");
        let log = LogStore::open(vfs, &dir.path().join("log"), PurgeGuard::unguarded())
            .expect("open the log");
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("the storage suite passes");
}
