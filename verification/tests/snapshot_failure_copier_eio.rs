//! An EIO in the copier, reading the live partition file or writing the snapshot's copy of it,
//! must fail the snapshot with the cause and clean up; if the copier's error were swallowed, a
//! snapshot with a hole would publish (or the task would hang); if it escaped, writers and
//! checkpoints would be hurt.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use deltasnap::vfs::{FaultError, FaultKind};
use support::{Fixture, SNAPSHOT_NAME, SNAPSHOT_THREAD};

#[test]
fn eio_reading_a_partition_file_fails_only_the_snapshot() {
    let fixture = Fixture::new();
    // The second chunk of the first partition: part of the copy is already done.
    fixture.fs.fail_nth(1, FaultError::Eio, |op| {
        op.kind == FaultKind::Read
            && op.path_contains("/t/store/partitions/part-0.dat")
            && op.on_thread(SNAPSHOT_THREAD)
    });
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    fixture.assert_failed_cleanly(result, 1, &["copy partition file", "os error 5"]);
}

#[test]
fn eio_writing_the_copy_fails_only_the_snapshot() {
    let fixture = Fixture::new();
    let copy = format!(".{SNAPSHOT_NAME}.deltasnap-tmp/partitions/part-1.dat");
    fixture.fs.fail_nth(0, FaultError::Eio, move |op| {
        op.kind == FaultKind::Write && op.path_contains(&copy) && op.on_thread(SNAPSHOT_THREAD)
    });
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    fixture.assert_failed_cleanly(result, 1, &["copy partition file", "os error 5"]);
}
