//! The crash-recovery model (R1, C3): if this fails, either the redo / checkpoint / control-file
//! ordering of DESIGN §2–3 changed, or the model no longer refutes one of its seeded bugs.

use deltasnap_models::recovery::{RecoveryBounds, RecoveryBug, RecoveryModel};
use deltasnap_models::registry;
use stateright::{Checker, Model};

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
        registry::refute_seeded_bug("recovery", bug.name(), bug.violates());
    }
}
