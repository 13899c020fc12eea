//! The epoch cut model (K1, K2): if this fails, either the write path / cut / checkpoint-image
//! protocol of DESIGN §3 changed, or the model no longer refutes one of its seeded bugs.

use deltasnap_models::cut::{CutBounds, CutBug, CutModel};
use deltasnap_models::registry;
use stateright::{Checker, Model};

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
        registry::refute_seeded_bug("cut", bug.name(), bug.violates());
    }
}

/// An engine trace of the registration race (writer loads epoch 1, the cut publishes 2, the writer
/// registers, re-checks, leaves 1 and retries in 2) is a behaviour of the model; without the
/// re-check step it is not. This is the shape of the engine-trace validation of DESIGN §6.
#[test]
fn registration_race_trace_is_a_behaviour_only_with_the_recheck() {
    use deltasnap_models::cut::CutAction::*;
    use stateright::Path;

    let trace = [
        LoadEpoch { writer: 0, page: 0 },
        Cut,
        Register { writer: 0 },
        Recheck { writer: 0 },
        Drain,
        Register { writer: 0 },
        Recheck { writer: 0 },
        Write { writer: 0 },
        Leave { writer: 0 },
        EndCheckpoint,
    ];
    let model = CutModel::new(CutBounds::default(), None);
    let init = model.init_states().remove(0);
    let path = Path::from_actions(&model, init, trace.iter()).expect("the trace is a behaviour");
    let last = path.last_state();
    assert_eq!(
        last.writers[0].receipts,
        vec![2],
        "the write retried into epoch 2"
    );
    assert_eq!(last.last_ended, 1);

    let without_recheck = CutModel::new(CutBounds::default(), Some(CutBug::RegisterWithoutRecheck));
    let init = without_recheck.init_states().remove(0);
    assert!(Path::from_actions(&without_recheck, init, trace.iter()).is_none());
}
