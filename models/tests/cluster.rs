//! The cluster snapshot model (two-phase commit of node-local snapshots over a lossy network): if
//! this fails, either the coordinator/node protocol changed, or the model no longer refutes one of
//! its seeded bugs.

use deltasnap_models::cluster::{cluster_model, ClusterBounds, ClusterBug};
use deltasnap_models::registry;
use stateright::{Checker, Model};

/// Pinned so that a silent change of the model shows (BFS, one thread).
const UNIQUE_STATES_AT_DEFAULT_BOUNDS: usize = 91_647;

#[test]
fn default_bounds_hold_and_state_count_is_pinned() {
    let checker = cluster_model(ClusterBounds::default(), None)
        .checker()
        .spawn_bfs()
        .join();
    checker.assert_properties();
    assert_eq!(
        checker.unique_state_count(),
        UNIQUE_STATES_AT_DEFAULT_BOUNDS
    );
}

#[test]
fn every_seeded_bug_is_found() {
    for bug in ClusterBug::ALL {
        registry::refute_seeded_bug("cluster", bug.name(), bug.violates());
    }
}
