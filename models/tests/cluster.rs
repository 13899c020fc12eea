//! The cluster snapshot model (two-phase commit of node-local snapshots over a lossy network): if
//! this fails, either the coordinator/node protocol changed, or the model no longer refutes one of
//! its seeded bugs.

use deltasnap_models::cluster::{cluster_model, describe, ClusterBounds, ClusterBug};
use stateright::{Checker, HasDiscoveries, Model};

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
        let mut bounds = ClusterBounds::default();
        for (name, minimum) in bug.needs() {
            match *name {
                "snapshots" => bounds.snapshots = bounds.snapshots.max(*minimum),
                other => panic!("bug `{}` needs unknown bound `{other}`", bug.name()),
            }
        }
        let model = cluster_model(bounds, Some(bug));
        let checker = model
            .clone()
            .checker()
            .finish_when(HasDiscoveries::AnyFailures)
            .spawn_bfs()
            .join();
        let path = checker
            .discovery(bug.violates())
            .unwrap_or_else(|| panic!("seeded bug `{}` was not found", bug.name()));
        let steps = path.into_vec();
        println!(
            "{}: counterexample to \"{}\", {} steps",
            bug.name(),
            bug.violates(),
            steps.len() - 1
        );
        for (state, action) in &steps {
            if let Some(action) = action {
                println!("    {}", describe(&model, state, action));
            }
        }
    }
}
