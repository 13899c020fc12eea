//! Loom over the cursor-aware hook decision (engine `snapshot/hook.rs`,
//! `DeltaPolicy::CursorAware`) against the copier's window: if the copier could announce a chunk
//! between the hook's decision "the copier will read this page later" and the file write that
//! decision relied on, the copier would read the page's old bytes, the write would land after, and
//! neither the copy nor the delta would hold the page's content at the cut (S1/S3).
#![cfg(deltasnap_loom)]

#[path = "support/loom_partition.rs"]
mod partition;

use deltasnap::bugs::{self, Bug};
use deltasnap::DeltaPolicy;
use deltasnap_verification::kill;
use partition::{Scenario, Seen};

/// Three pages on disk, copied two at a time (chunks `[0, 2)` and `[2, 3)`). `S` writes pages 1
/// and 2 while the copier's window may be before, on or past each of them; the next checkpoint
/// overwrites page 0, which the copier may or may not have copied, and page 2 again.
fn write_races_the_window(policy: DeltaPolicy) -> Scenario {
    Scenario {
        name: "write races the window",
        policy,
        pages_on_disk: 3,
        pages_at_cut: 3,
        cut_writes: &[1, 2],
        later_writes: &[0, 2],
        chunk_pages: 2,
    }
}

fn only(bug: Option<Bug>) {
    for other in Bug::ALL {
        bugs::set(other, Some(other) == bug);
    }
}

#[test]
fn merged_copy_equals_the_cut_cursor_aware_policy() {
    only(None);
    let coverage = write_races_the_window(DeltaPolicy::CursorAware).check();
    coverage.assert_never(&[Seen::AnnounceBetweenDecisionAndWrite]);
    coverage.assert_saw(&[
        Seen::CopyDoneBeforeCheckpointEnded,
        Seen::CheckpointEndedBeforeCopyDone,
        // Both sides of the window while S writes ...
        Seen::SkipCopierWillRead,
        Seen::NewImage,
        // ... and after S.
        Seen::SkipAlreadyCopied,
        Seen::OldImageFromFile,
        Seen::StepWaitedForHookCall,
    ]);
}

#[test]
fn merged_copy_equals_the_cut_full_policy() {
    only(None);
    let coverage = write_races_the_window(DeltaPolicy::Full).check();
    coverage.assert_never(&[Seen::AnnounceBetweenDecisionAndWrite]);
    coverage.assert_saw(&[
        Seen::CopyDoneBeforeCheckpointEnded,
        Seen::CheckpointEndedBeforeCopyDone,
        Seen::NewImage,
        Seen::OldImageFromFile,
        Seen::StepWaitedForHookCall,
    ]);
}

#[test]
#[should_panic(expected = "S1")]
fn seeded_bug_cursor_decision_not_atomic_is_caught() {
    only(Some(Bug::CursorDecisionNotAtomic));
    write_races_the_window(DeltaPolicy::CursorAware).check();
}

/// The full rule does not look at the window, so ending the hook call before the file write is
/// harmless under it (the protocol's locking contract keeps one rule for both policies anyway):
/// the copier does announce and read pages between decisions and writes, and the merged copy is
/// still the cut. The same holds in the stateright model (`SnapshotBug::applies_to`).
#[test]
fn cursor_decision_not_atomic_is_harmless_under_the_full_policy() {
    only(Some(Bug::CursorDecisionNotAtomic));
    let coverage = write_races_the_window(DeltaPolicy::Full).check();
    only(None);
    coverage.assert_saw(&[Seen::AnnounceBetweenDecisionAndWrite]);
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`. The safety checks of
/// the tests above under both policies (not their coverage checks, which only show the scenario
/// still exercises the race).
#[test]
fn kill_matrix() {
    kill::run_requested("loom", || {
        for policy in [DeltaPolicy::Full, DeltaPolicy::CursorAware] {
            let coverage = write_races_the_window(policy).check();
            coverage.assert_never(&[Seen::AnnounceBetweenDecisionAndWrite]);
        }
    });
}
