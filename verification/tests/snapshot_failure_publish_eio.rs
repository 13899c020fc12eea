//! An EIO while publishing (writing the manifest, renaming the temporary directory to the final
//! name) must fail the snapshot with the cause and leave nothing under the final name: a
//! half-published snapshot (no manifest, or a name that appears although `wait` failed) would be
//! taken for a good one, or block the next snapshot of that name.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use deltasnap::vfs::{FaultError, FaultKind};
use support::{Fixture, SNAPSHOT_NAME};

#[test]
fn eio_writing_the_manifest_fails_only_the_snapshot() {
    let fixture = Fixture::new();
    fixture.fs.fail_nth(0, FaultError::Eio, |op| {
        op.kind == FaultKind::Write && op.path.ends_with("manifest.json")
    });
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    fixture.assert_failed_cleanly(result, 1, &["write manifest", "os error 5"]);
}

#[test]
fn eio_renaming_to_the_final_name_fails_only_the_snapshot() {
    let fixture = Fixture::new();
    let tmp = format!(".{SNAPSHOT_NAME}.deltasnap-tmp");
    fixture.fs.fail_nth(0, FaultError::Eio, move |op| {
        op.kind == FaultKind::Rename && op.path.ends_with(&tmp)
    });
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    fixture.assert_failed_cleanly(result, 1, &["publish snapshot", "os error 5"]);
}

/// The last step of the publish fails after the rename: `wait` reports the failure, so the final
/// name must not stay behind (its durability is unknown, and it blocks a retry of that name).
#[test]
fn eio_syncing_the_target_directory_after_the_rename_fails_only_the_snapshot() {
    let fixture = Fixture::new();
    fixture.fs.fail_nth(0, FaultError::Eio, |op| {
        op.kind == FaultKind::SyncDir && op.path.ends_with("snapshots")
    });
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    fixture.assert_failed_cleanly(
        result,
        1,
        &["fsync snapshot target directory", "os error 5"],
    );
}
