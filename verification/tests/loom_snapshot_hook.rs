//! Loom over the snapshot hook lock (engine `snapshot/hook.rs`) against the copier's copy-done and
//! the merge's close: if `close` could run between a hook decision and the delta append it asks
//! for, the append would land in a delta the merge already read, and the snapshot would miss a
//! capture (S4).
#![cfg(deltasnap_loom)]

#[path = "support/loom_partition.rs"]
mod partition;

use deltasnap::bugs::{self, Bug};
use deltasnap::DeltaPolicy;
use deltasnap_verification::kill;
use partition::{Scenario, Seen};

/// Two pages on disk, copied one per chunk, and a third allocated in `S`. `S` writes pages 0 and
/// 2; the next checkpoint writes page 1 for the first time after the cut (its old image is captured
/// from the file while the copy is not done: that capture races the copier's copy-done and the
/// merge's close), page 2 again (already captured) and page 3, allocated after the cut.
fn close_races_a_capture(policy: DeltaPolicy) -> Scenario {
    Scenario {
        name: "close races a capture",
        policy,
        pages_on_disk: 2,
        pages_at_cut: 3,
        cut_writes: &[0, 2],
        later_writes: &[1, 2, 3],
        chunk_pages: 1,
    }
}

fn only(bug: Option<Bug>) {
    for other in Bug::ALL {
        bugs::set(other, Some(other) == bug);
    }
}

/// Besides both race orders (S5): captures of both kinds before the close, decisions after it,
/// and the skips every policy makes.
const EXPECTED: [Seen; 9] = [
    Seen::CopyDoneBeforeCheckpointEnded,
    Seen::CheckpointEndedBeforeCopyDone,
    Seen::NewImage,
    Seen::OldImageFromFile,
    Seen::Closed,
    Seen::SkipAlreadyCaptured,
    Seen::SkipBeyondCut,
    Seen::SkipComplete,
    Seen::StepWaitedForHookCall,
];

#[test]
fn merge_reads_every_decided_capture_full_policy() {
    only(None);
    let coverage = close_races_a_capture(DeltaPolicy::Full).check();
    coverage.assert_never(&[Seen::AnnounceBetweenDecisionAndWrite]);
    coverage.assert_saw(&EXPECTED);
}

#[test]
fn merge_reads_every_decided_capture_cursor_aware_policy() {
    only(None);
    let coverage = close_races_a_capture(DeltaPolicy::CursorAware).check();
    coverage.assert_never(&[Seen::AnnounceBetweenDecisionAndWrite]);
    coverage.assert_saw(&EXPECTED);
    coverage.assert_saw(&[Seen::SkipCopierWillRead, Seen::SkipAlreadyCopied]);
}

#[test]
#[should_panic(expected = "S4")]
fn seeded_bug_close_ignoring_the_hook_call_in_flight_is_caught_full_policy() {
    only(Some(Bug::CloseIgnoresHookInFlight));
    close_races_a_capture(DeltaPolicy::Full).check();
}

#[test]
#[should_panic(expected = "S4")]
fn seeded_bug_close_ignoring_the_hook_call_in_flight_is_caught_cursor_aware_policy() {
    only(Some(Bug::CloseIgnoresHookInFlight));
    close_races_a_capture(DeltaPolicy::CursorAware).check();
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`. The safety checks of
/// the tests above under both policies (not their coverage checks, which only show the scenario
/// still exercises the race).
#[test]
fn kill_matrix() {
    kill::run_requested("loom", || {
        for policy in [DeltaPolicy::Full, DeltaPolicy::CursorAware] {
            let coverage = close_races_a_capture(policy).check();
            coverage.assert_never(&[Seen::AnnounceBetweenDecisionAndWrite]);
        }
    });
}
