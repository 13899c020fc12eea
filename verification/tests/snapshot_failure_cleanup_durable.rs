//! A failed snapshot must make the removal of its temporary directory durable before it removes
//! its marker: otherwise a crash brings the directory back with no marker left to remove it, and
//! every later snapshot of that name is refused ("… exists: … its store was not reopened") even
//! after the reopen. (Found by `fault_matrix_snapshot.rs`.)
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::sync::Arc;

use deltasnap::vfs::{FaultError, FaultKind, Vfs};
use deltasnap::Engine;
use support::{
    config, marker, store_dir, target_dir, tmp_dir, Fixture, SNAPSHOT_NAME, SNAPSHOT_THREAD,
};

#[test]
fn a_failed_snapshot_leaves_no_temp_dir_after_a_crash() {
    let fixture = Fixture::new();
    fixture
        .fs
        .fail_nth(0, FaultError::Eio, |op| op.kind == FaultKind::Copy);
    fixture.fs.hold_thread(SNAPSHOT_THREAD);
    let snapshot = fixture.engine.snapshot(fixture.options()).unwrap();
    // A real file system may persist the `mkdir`s of the snapshot's setup without an fsync
    // (SimFs never does): make them durable, as they may be.
    let tmp = tmp_dir(SNAPSHOT_NAME);
    for dir in [
        target_dir(),
        tmp.clone(),
        tmp.join("partitions"),
        tmp.join("deltas"),
    ] {
        fixture.sim.sync_dir(&dir).unwrap();
    }
    fixture.fs.release();
    let error = snapshot
        .wait()
        .map(|m| m.cut_epoch)
        .expect_err("the copy fails");
    assert!(error.to_string().contains("copy partition file"), "{error}");
    assert_eq!(fixture.fs.fired().len(), 1);
    assert!(!fixture.exists(&tmp));
    assert!(!fixture.exists(&marker(SNAPSHOT_NAME)));

    let Fixture {
        sim,
        engine,
        page_size,
        ..
    } = fixture;
    std::mem::forget(engine);
    sim.crash(7);
    let engine = Engine::open_on(Arc::new(sim.clone()), store_dir(), config(page_size)).unwrap();
    assert!(
        !Vfs::exists(&sim, &tmp).unwrap(),
        "the temporary directory came back after the crash, without a marker to remove it"
    );
    engine
        .snapshot(deltasnap::SnapshotOptions::new(target_dir(), SNAPSHOT_NAME))
        .expect("the name is free again")
        .wait()
        .unwrap();
}
