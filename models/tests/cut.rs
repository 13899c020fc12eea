//! The epoch cut model (K1, K2): if this fails, either the write path / cut / checkpoint-image
//! protocol of DESIGN §3 changed, or the model no longer refutes one of its seeded bugs.

use deltasnap_models::cut::{describe, CutBounds, CutBug, CutModel};
use stateright::{Checker, HasDiscoveries, Model};

/// Pinned so that a silent change of the model shows (BFS, one thread).
const UNIQUE_STATES_AT_DEFAULT_BOUNDS: usize = 202_547;

#[test]
fn default_bounds_hold_and_state_count_is_pinned() {
    let checker = CutModel::new(CutBounds::default(), None)
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
    for bug in CutBug::ALL {
        let model = CutModel::new(CutBounds::default(), Some(bug));
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
