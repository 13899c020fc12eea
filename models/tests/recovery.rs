//! The crash-recovery model (R1, C3): if this fails, either the redo / checkpoint / control-file
//! ordering of DESIGN §2–3 changed, or the model no longer refutes one of its seeded bugs.

use deltasnap_models::recovery::{describe, RecoveryBounds, RecoveryBug, RecoveryModel};
use stateright::{Checker, HasDiscoveries, Model};

/// Pinned so that a silent change of the model shows (BFS, one thread).
const UNIQUE_STATES_AT_DEFAULT_BOUNDS: usize = 20_202;

#[test]
fn default_bounds_hold_and_state_count_is_pinned() {
    let checker = RecoveryModel::new(RecoveryBounds::default(), None)
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
    for bug in RecoveryBug::ALL {
        let model = RecoveryModel::new(RecoveryBounds::default(), Some(bug));
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
