//! An EIO when the hook's delta buffer fills in the middle of the cut checkpoint `S` (the write
//! of a whole buffer of captured pages, made by the append that finds it full) must fail the
//! snapshot, naming the page whose capture hit it, and nothing else: if the error escaped the
//! hook the checkpoint would fail and poison the engine; if the buffered pages were dropped
//! silently, the snapshot would publish without them (S3).
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use deltasnap::vfs::{FaultError, FaultKind};
use support::{Fixture, SNAPSHOT_CHECKPOINT_THREAD};

/// Entries of a 512-byte page take 520 bytes; a 1 MiB buffer holds 2,016 of them. The fixture
/// rewrites the even pages before the snapshot, so `S` writes (and the full policy captures)
/// 2,100 pages of the one partition: the 2,017th capture writes the buffer out.
const PAGES: u32 = 4200;

#[test]
fn eio_on_a_full_delta_buffer_during_the_cut_checkpoint_fails_only_the_snapshot() {
    let fixture = Fixture::with(512, 1, PAGES);
    fixture.fs.fail_nth(0, FaultError::Eio, |op| {
        op.kind == FaultKind::Write
            && op.path_contains("/deltas/")
            && op.offset != Some(0)
            && op.on_thread(SNAPSHOT_CHECKPOINT_THREAD)
    });
    let result = fixture.engine.snapshot(fixture.options()).unwrap().wait();
    let error = result
        .as_ref()
        .map(|m| m.cut_epoch)
        .unwrap_err()
        .to_string();
    assert!(
        !error.contains("at the end of checkpoint"),
        "the full buffer, not the end of the checkpoint, wrote first: {error}"
    );
    fixture.assert_failed_cleanly(
        result,
        1,
        &[
            "capturing page 0:",
            "into the delta failed: append to delta file",
            "os error 5",
        ],
    );
}
