//! The cluster snapshot model (two-phase commit of node-local snapshots over a lossy network): if
//! this fails, either the coordinator/node protocol changed, or the model no longer refutes one of
//! its seeded bugs.

use deltasnap_models::cluster::{cluster_model, describe, ClusterBounds, ClusterBug};
use deltasnap_models::registry::{check_model, CheckOptions, Verdict};
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
        let mut bounds = ClusterBounds::default();
        for (name, minimum) in bug.needs() {
            match *name {
                "snapshots" => bounds.snapshots = bounds.snapshots.max(*minimum),
                other => panic!("bug `{}` needs unknown bound `{other}`", bug.name()),
            }
        }
        let model = cluster_model(bounds, Some(bug));
        let options = CheckOptions {
            stop_at_first_failure: true,
            ..CheckOptions::default()
        };
        let report = check_model(model, describe, options);
        let property = report
            .properties
            .iter()
            .find(|p| p.name == bug.violates())
            .expect("the bug names one of the model's properties");
        assert_eq!(
            property.verdict,
            Verdict::Violated,
            "seeded bug `{}` was not found",
            bug.name()
        );
        println!(
            "{}: counterexample to \"{}\", {} steps",
            bug.name(),
            bug.violates(),
            property.trace.len()
        );
        for line in &property.trace {
            println!("    {line}");
        }
    }
}
