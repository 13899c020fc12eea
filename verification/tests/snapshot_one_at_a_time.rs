//! At most one snapshot runs per store, and a cancelled one ends cleanly: if the slot were not
//! exclusive, two snapshots would install hooks over each other; if `cancel` or the end of a
//! snapshot did not release the slot, clean up the temporary directory and marker and leave the
//! engine alone, the store could never snapshot again.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deltasnap::{CheckpointCut, CheckpointListener, Error, SnapshotOptions};
use support::{
    is_snapshot_running, target_dir, tmp_dir, wait_until, Fixture, Gate, HoldCutCheckpoint,
    SNAPSHOT_NAME,
};

#[test]
fn a_second_snapshot_while_one_runs_is_refused_and_works_after_it_ended() {
    let fixture = Fixture::new();
    let copier = Arc::new(Gate::default());
    let mut options = fixture.options();
    options.copy_gate = Some(copier.copy_gate());
    let first = fixture.engine.snapshot(options).unwrap();
    wait_until("the copier", || copier.reached() > 0);

    for name in ["other", SNAPSHOT_NAME] {
        let error = fixture
            .engine
            .snapshot(SnapshotOptions::new(target_dir(), name))
            .expect_err("a second snapshot while one runs");
        assert!(
            is_snapshot_running(&error, SNAPSHOT_NAME),
            "{name}: {error}"
        );
    }
    assert!(
        !first.is_finished(),
        "the refusal did not disturb the first"
    );

    copier.open();
    let manifest = first.wait().unwrap();
    fixture.assert_snapshot_is_the_cut(SNAPSHOT_NAME, &manifest);
    let manifest = fixture
        .engine
        .snapshot(SnapshotOptions::new(target_dir(), "other"))
        .expect("the slot is free once the first ended")
        .wait()
        .unwrap();
    fixture.assert_snapshot_is_the_cut("other", &manifest);
}

#[test]
fn cancel_during_the_copy_ends_with_cancelled_and_cleans_up() {
    let fixture = Fixture::new();
    let copier = Arc::new(Gate::default());
    let mut options = fixture.options();
    options.copy_gate = Some(copier.copy_gate());
    let snapshot = fixture.engine.snapshot(options).unwrap();
    wait_until("the copier", || copier.reached() > 0);
    snapshot.cancel();
    copier.open();
    let result = snapshot.wait();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    fixture.assert_failed_cleanly(result, 0, &["snapshot cancelled"]);
}

#[test]
fn cancel_while_the_cut_checkpoint_writes_ends_with_cancelled_and_cleans_up() {
    let fixture = Fixture::new();
    // Registered before the snapshot's hook, so it holds `S` before its first page write.
    let hold = Arc::new(HoldCutCheckpoint::default());
    fixture.engine.add_checkpoint_listener(hold.clone());
    hold.armed.store(true, Ordering::SeqCst);
    let snapshot = fixture.engine.snapshot(fixture.options()).unwrap();
    wait_until("the cut checkpoint", || hold.gate.reached() > 0);
    snapshot.cancel();
    // The task does not wait for `S` to end before it gives up.
    wait_until("the cancelled snapshot to end", || snapshot.is_finished());
    hold.gate.open();
    let result = snapshot.wait();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    fixture.assert_failed_cleanly(result, 0, &["snapshot cancelled"]);
}

/// Holds the first checkpoint that begins after it is armed in `on_checkpoint_begin`: after the
/// checkpoint took its list of listeners (a snapshot's among them) and before the snapshot's
/// listener sees the cut.
#[derive(Default)]
struct HoldCheckpointBegin {
    armed: AtomicBool,
    gate: Gate,
}

impl CheckpointListener for HoldCheckpointBegin {
    fn on_checkpoint_begin(&self, _: &CheckpointCut) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.gate.pass();
        }
    }
}

/// A checkpoint that took its listeners before a snapshot ended still calls that snapshot's
/// `on_checkpoint_begin` after it ended; the listener must then do nothing.
#[test]
fn cancel_before_the_cut_frees_the_name_for_the_next_snapshot() {
    let fixture = Fixture::new();
    let hold = Arc::new(HoldCheckpointBegin::default());
    fixture.engine.add_checkpoint_listener(hold.clone());
    hold.armed.store(true, Ordering::SeqCst);
    let first = fixture.engine.snapshot(fixture.options()).unwrap();
    wait_until("the cut checkpoint to begin", || hold.gate.reached() > 0);
    first.cancel();
    let result = first.wait();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(!fixture.exists(&tmp_dir(SNAPSHOT_NAME)));

    // The cancelled snapshot ended; its checkpoint has not reached its listener yet. A new
    // snapshot of the same name must not be disturbed by what that listener does later.
    let second = fixture.engine.snapshot(fixture.options()).unwrap();
    hold.gate.open();
    let manifest = second
        .wait()
        .expect("the cancelled snapshot's listener stays out of the next snapshot");
    fixture.assert_snapshot_is_the_cut(SNAPSHOT_NAME, &manifest);
}
