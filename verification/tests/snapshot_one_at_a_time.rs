//! At most one snapshot runs per store, and a cancelled one ends cleanly: if the slot were not
//! exclusive, two snapshots would install hooks over each other; if `cancel` or the end of a
//! snapshot did not release the slot, clean up the temporary directory and marker and leave the
//! engine alone, the store could never snapshot again.
#![cfg(not(any(deltasnap_loom, deltasnap_shuttle)))]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use deltasnap::{Error, SnapshotOptions};
use support::{
    is_snapshot_running, target_dir, wait_until, Fixture, Gate, HoldCutCheckpoint, SNAPSHOT_NAME,
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
