//! An EIO on a delta append made by the write hook while the cut checkpoint `S` is writing must
//! fail the snapshot (naming the cause) and nothing else: if the hook's error reached the
//! checkpoint, the engine would be poisoned; if the task did not clean up, a temporary directory,
//! a marker or the one-snapshot slot would be left behind.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use deltasnap::vfs::{FaultError, FaultKind};
use support::{Fixture, SNAPSHOT_CHECKPOINT_THREAD};

#[test]
fn eio_on_a_delta_append_during_the_cut_checkpoint_fails_only_the_snapshot() {
    let fixture = Fixture::new();
    // The delta header is written at offset 0 at the cut; appends come after it, from the
    // thread that runs `S`.
    fixture.fs.fail_nth(0, FaultError::Eio, |op| {
        op.kind == FaultKind::Write
            && op.path_contains("/deltas/")
            && op.offset != Some(0)
            && op.on_thread(SNAPSHOT_CHECKPOINT_THREAD)
    });
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    fixture.assert_failed_cleanly(
        result,
        1,
        &["capturing page", "append to delta file", "os error 5"],
    );
}
