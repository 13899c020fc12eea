//! Breaks if a publish that fails after its rename leaves the final name behind while `wait`
//! errs: the caller was told the snapshot failed, yet a directory under the final name exists
//! (durability unknown, blocking a retry of the name). Also with the first way of taking the
//! name back failing, and with a fault at every operation the snapshot thread makes in the
//! target: `Ok` means a snapshot that verifies (also after a power cut), `Err` means no final
//! name (also after a power cut).
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::sync::{Arc, Mutex};

use deltasnap::bugs::Bug;
use deltasnap::vfs::{FaultError, FaultKind, Vfs};
use deltasnap_verification::fault_fs::Op;
use deltasnap_verification::kill;
use support::{final_dir, target_dir, Fixture, SNAPSHOT_NAME, SNAPSHOT_THREAD};

/// Tests that switch a seeded bug on run alone (the switch is process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

/// The fsync of the target directory after the rename.
fn is_target_sync(op: &Op) -> bool {
    op.kind == FaultKind::SyncDir && op.path == target_dir() && op.on_thread(SNAPSHOT_THREAD)
}

/// Any operation on the final name (its removal, or its rename back).
fn is_on_final(op: &Op, kind: FaultKind) -> bool {
    op.kind == kind && op.path == final_dir(SNAPSHOT_NAME)
}

fn assert_final_name_absent(fixture: &Fixture, what: &str) {
    assert!(
        !fixture.exists(&final_dir(SNAPSHOT_NAME)),
        "{what}: wait failed but the final name is left behind"
    );
}

/// The target's fsync fails after the rename, and so would a removal of the final name.
fn sync_fails_and_removal_would_fail() {
    let fixture = Fixture::new();
    fixture.fs.fail_nth(0, FaultError::Eio, is_target_sync);
    fixture
        .fs
        .fail_nth(0, FaultError::Eio, |op| is_on_final(op, FaultKind::Remove));
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    assert!(result.is_err(), "the publish must fail: {result:?}");
    assert_final_name_absent(&fixture, "removal failing");
    fixture.assert_failed_cleanly(
        result,
        1,
        &["fsync snapshot target directory", "os error 5"],
    );
}

#[test]
fn a_failed_publish_takes_its_final_name_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    sync_fails_and_removal_would_fail();
}

#[test]
fn a_failed_rename_back_falls_back_to_removing_the_final_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fixture = Fixture::new();
    fixture.fs.fail_nth(0, FaultError::Eio, is_target_sync);
    fixture
        .fs
        .fail_nth(0, FaultError::Eio, |op| is_on_final(op, FaultKind::Rename));
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    assert_final_name_absent(&fixture, "rename back failing");
    fixture.assert_failed_cleanly(
        result,
        2,
        &["fsync snapshot target directory", "os error 5"],
    );
}

/// An EIO at the `n`-th operation the snapshot thread makes in the target directory, with the
/// final name's removal failing too: all or nothing, now and after a power cut.
#[test]
fn a_fault_at_every_operation_in_the_target_leaves_all_or_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let in_target = |op: &Op| op.on_thread(SNAPSHOT_THREAD) && op.path.starts_with(target_dir());
    let mut points = 0;
    for n in 0.. {
        let fixture = Fixture::new();
        fixture.fs.fail_nth(n, FaultError::Eio, in_target);
        fixture
            .fs
            .fail_nth(0, FaultError::Eio, |op| is_on_final(op, FaultKind::Remove));
        let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
        if fixture.fs.fired().is_empty() {
            assert!(result.is_ok(), "no fault, yet: {result:?}");
            break;
        }
        points += 1;
        let what = format!(
            "EIO at operation {n} in the target ({:?})",
            fixture.fs.fired()[0]
        );
        match &result {
            Ok(manifest) => fixture.assert_snapshot_is_the_cut(SNAPSHOT_NAME, manifest),
            Err(_) => assert_final_name_absent(&fixture, &what),
        }
        std::mem::forget(fixture.engine);
        fixture.sim.crash(n);
        let vfs: Arc<dyn Vfs> = Arc::new(fixture.sim.clone());
        let final_exists = Vfs::exists(&fixture.sim, &final_dir(SNAPSHOT_NAME)).unwrap();
        match &result {
            Ok(_) => {
                let report =
                    deltasnap::verify_snapshot_on(&vfs, &final_dir(SNAPSHOT_NAME)).unwrap();
                assert!(
                    report.is_ok(),
                    "{what}: after a power cut: {:?}",
                    report.problems
                );
            }
            Err(error) => assert!(
                !final_exists,
                "{what}: wait failed ({error}) but the final name is back after a power cut"
            ),
        }
    }
    assert!(points > 10, "only {points} fault points");
    eprintln!("{points} fault points, all or nothing at each");
}

#[test]
fn seeded_publish_leaves_final_name_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    kill::assert_caught(
        "snapshot-publish",
        Bug::PublishLeavesFinalName,
        sync_fails_and_removal_would_fail,
    );
}
