//! ENOSPC on a delta append after the cut checkpoint `S` ended (the hook capturing a page's old,
//! `S`-time image from the partition file before a later checkpoint overwrites it) must fail the
//! snapshot with the cause and leave that later checkpoint, the writers and the store untouched:
//! if the error escaped the hook, the checkpoint would fail and poison the engine.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::sync::Arc;

use deltasnap::vfs::{FaultError, FaultKind};
use support::{wait_checkpoint_ended, wait_until, Fixture, Gate};

#[test]
fn enospc_on_an_old_image_capture_after_the_cut_fails_only_the_snapshot() {
    let mut fixture = Fixture::new();
    let copier = Arc::new(Gate::default());
    let mut options = fixture.options();
    options.copy_gate = Some(copier.copy_gate());
    let snapshot = fixture.engine.snapshot(options).unwrap();
    wait_until("the copier", || copier.reached() > 0);
    let cut = snapshot.progress().cut_epoch.expect("the cut is taken");
    wait_checkpoint_ended(&fixture.engine, cut);

    // S ended, the copy has not started: overwriting the odd pages (clean in S, so not in the
    // delta yet) makes the next checkpoint capture their old images first.
    fixture.fs.fail_nth(0, FaultError::Enospc, |op| {
        op.kind == FaultKind::Write && op.path_contains("/deltas/")
    });
    fixture.write_pages(|page| page.index % 2 == 1, 3);
    let outcome = fixture
        .engine
        .checkpoint()
        .expect("the checkpoint is not failed by the hook");
    assert!(outcome.epoch.is_some_and(|epoch| epoch > cut));
    copier.open();
    let result = snapshot.wait();
    fixture.assert_failed_cleanly(
        result,
        1,
        &["capturing page", "append to delta file", "os error 28"],
    );
}
