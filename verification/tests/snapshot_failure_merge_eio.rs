//! An EIO while the merge reads a delta file back must fail the snapshot with the cause and
//! clean up: if the merge went on without the delta, the published snapshot would hold pages
//! from after the cut or torn ones (S1, S3).
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use deltasnap::vfs::{FaultError, FaultKind};
use support::Fixture;

#[test]
fn eio_reading_the_delta_back_fails_only_the_snapshot() {
    let fixture = Fixture::new();
    // Read 0 is the header; read 1 is the first entry. Nothing but the merge reads a delta.
    fixture.fs.fail_nth(1, FaultError::Eio, |op| {
        op.kind == FaultKind::Read && op.path_contains("/deltas/part-0.delta")
    });
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    fixture.assert_failed_cleanly(result, 1, &["read delta entry", "os error 5"]);
}
