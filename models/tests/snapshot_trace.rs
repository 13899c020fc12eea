//! Trace conformance (`deltasnap_models::snapshot_trace`) on hand-written engine traces: a trace
//! of a correct snapshot is a behaviour of the snapshot model (and its actions pass stateright's
//! `Path::from_actions`), and every corruption of it that an engine bug would produce (a capture
//! missing, a copy done early, a capture after close, a stale copy, …) is rejected at the event
//! that breaks it. If this fails, the mapping from engine events to model actions no longer
//! tells a correct engine from a broken one.

use deltasnap::snapshot::protocol::{Capture, DeltaPolicy, Skip};
use deltasnap::snapshot::trace::{CutPartitionTrace, Event, PageImage};
use deltasnap::{PageId, PartitionId};
use deltasnap_models::snapshot_trace::{self, initial_state};
use stateright::{Model, Path};

const P0: PartitionId = PartitionId(0);

fn image(lsn: u64) -> Option<PageImage> {
    Some(PageImage {
        lsn,
        crc: lsn as u32 ^ 0x5a5a,
    })
}

fn page(index: u32) -> PageId {
    PageId::new(P0, index)
}

/// One partition, pages 0 and 1 on disk, page 2 allocated before the cut. `S` (checkpoint 5)
/// writes pages 0 and 2 and ends before the copier starts; checkpoint 6 overwrites page 1, whose
/// content at the cut the hook captures from the file; the copier copies both pages in one chunk;
/// the merge; then checkpoint 7 finds the hook closed.
fn correct_trace() -> Vec<Event> {
    vec![
        /* 0 */
        Event::Cut {
            epoch: 5,
            partitions: vec![CutPartitionTrace {
                id: P0,
                pages_at_cut: 3,
                copy_end: 2,
                file: vec![image(10), image(11)],
            }],
        },
        /* 1 */
        Event::HookDecided {
            page: page(0),
            capture: Capture::NewImage,
            image: image(20),
        },
        /* 2 */
        Event::DeltaAppended {
            page: page(0),
            image: image(20),
        },
        /* 3 */ Event::PageWriteDone { index: 0 },
        /* 4 */
        Event::HookDecided {
            page: page(2),
            capture: Capture::NewImage,
            image: image(21),
        },
        /* 5 */
        Event::DeltaAppended {
            page: page(2),
            image: image(21),
        },
        /* 6 */ Event::PageWriteDone { index: 2 },
        /* 7 */ Event::CheckpointEnd { epoch: 5 },
        /* 8 */ Event::CheckpointBegin { epoch: 6 },
        /* 9 */
        Event::HookDecided {
            page: page(1),
            capture: Capture::OldImageFromFile,
            image: image(30),
        },
        /* 10 */
        Event::DeltaAppended {
            page: page(1),
            image: image(11),
        },
        /* 11 */ Event::PageWriteDone { index: 1 },
        /* 12 */ Event::CheckpointEnd { epoch: 6 },
        /* 13 */
        Event::Announce {
            partition: P0,
            reading_end: 2,
        },
        /* 14 */
        Event::ChunkRead {
            partition: P0,
            first: 0,
            images: vec![image(20), image(30)],
        },
        /* 15 */
        Event::ChunkCopied {
            partition: P0,
            copied_end: 2,
        },
        /* 16 */ Event::CopyDone { partition: P0 },
        /* 17 */ Event::Close { partition: P0 },
        /* 18 */
        Event::Merge {
            partition: P0,
            delta: vec![(0, image(20)), (1, image(11)), (2, image(21))],
        },
        /* 19 */ Event::CheckpointBegin { epoch: 7 },
        /* 20 */
        Event::HookDecided {
            page: page(0),
            capture: Capture::Closed,
            image: image(40),
        },
        /* 21 */ Event::PageWriteDone { index: 0 },
        /* 22 */ Event::CheckpointEnd { epoch: 7 },
    ]
}

/// Checks that `trace` is rejected at event `at`, with a reason containing `reason`.
fn assert_rejected(what: &str, trace: &[Event], at: usize, reason: &str) {
    match snapshot_trace::check(trace, DeltaPolicy::Full) {
        Ok(_) => panic!("{what}: the model accepted the trace"),
        Err(mismatch) => {
            assert_eq!(mismatch.event, at, "{what}: {mismatch}");
            assert!(
                mismatch.reason.contains(reason),
                "{what}: expected {reason:?} in: {mismatch}"
            );
        }
    }
}

#[test]
fn a_correct_trace_is_a_behaviour_and_passes_path_from_actions() {
    let trace = correct_trace();
    let conformance =
        snapshot_trace::check(&trace, DeltaPolicy::Full).unwrap_or_else(|m| panic!("{m}"));
    assert_eq!(conformance.stopped_at_cancel, None);
    assert!(conformance.final_state.is_complete());
    let bounds = conformance.model.bounds;
    assert_eq!(
        (
            bounds.partitions,
            bounds.pages_on_disk,
            bounds.pages_max,
            bounds.writes_per_page,
            bounds.checkpoints_after_cut,
            bounds.chunk_pages
        ),
        (1, 2, 3, 2, 2, 2),
        "bounds from the trace"
    );
    // Every partition has pages_on_disk pages: the start is the model's own initial state, so
    // stateright's own check applies too.
    let init = conformance.model.init_states().remove(0);
    assert_eq!(conformance.init, init);
    let path = Path::from_actions(&conformance.model, init, &conformance.actions)
        .expect("Path::from_actions accepts the mapped actions");
    assert_eq!(path.last_state(), &conformance.final_state);
    // Both halves of S3 happened: a capture during S and one after it.
    let protocol = &conformance.final_state.partitions[0]
        .snapshot
        .as_ref()
        .unwrap()
        .protocol;
    assert_eq!(
        (
            protocol.captures().new_images,
            protocol.captures().old_images
        ),
        (2, 1)
    );
}

#[test]
fn initial_state_is_the_models_for_equal_partitions() {
    use deltasnap_models::snapshot::{SnapshotBounds, SnapshotModel};
    let bounds = SnapshotBounds::two_partitions();
    let model = SnapshotModel::new(bounds, DeltaPolicy::Full, None);
    assert_eq!(
        model.init_states(),
        vec![initial_state(&[bounds.pages_on_disk; 2])]
    );
}

#[test]
fn a_missing_capture_is_rejected() {
    // The hook decided NewImage for page 0 but nothing reached the delta (skip-new-image-capture).
    let mut trace = correct_trace();
    trace.remove(2);
    assert_rejected("new image", &trace, 2, "does not allow WritePage");
    // The old image of page 1 was never appended (skip-old-image-capture).
    let mut trace = correct_trace();
    trace.remove(10);
    assert_rejected("old image", &trace, 10, "does not allow WritePage");
}

#[test]
fn a_capture_of_the_wrong_image_is_rejected() {
    // The old-image capture appended the image being written instead of the file's.
    let mut trace = correct_trace();
    trace[10] = Event::DeltaAppended {
        page: page(1),
        image: image(30),
    };
    assert_rejected("wrong image", &trace, 10, "the model appends");
}

#[test]
fn a_different_decision_is_rejected() {
    // A second look at page 1 after S (as if the bitset had it): the model captures it.
    let mut trace = correct_trace();
    trace[9] = Event::HookDecided {
        page: page(1),
        capture: Capture::Nothing(Skip::AlreadyCaptured),
        image: image(30),
    };
    trace.remove(10);
    assert_rejected("decision", &trace, 9, "decided");
}

#[test]
fn copy_done_before_the_last_chunk_is_rejected() {
    let mut trace = correct_trace();
    let copy_done = trace.remove(16);
    trace.insert(15, copy_done);
    assert_rejected("copy done early", &trace, 15, "does not allow CopyDone");
}

#[test]
fn a_stale_copy_is_rejected() {
    // The copier copied page 1's content at the cut, though checkpoint 6 had overwritten it
    // before the copier announced the chunk: the copy could not have read it.
    let mut trace = correct_trace();
    trace[14] = Event::ChunkRead {
        partition: P0,
        first: 0,
        images: vec![image(20), image(11)],
    };
    assert_rejected("stale copy", &trace, 15, "did not hold");
    // An image no checkpoint ever wrote.
    trace[14] = Event::ChunkRead {
        partition: P0,
        first: 0,
        images: vec![image(20), image(99)],
    };
    assert_rejected("unknown image", &trace, 13, "neither in the file");
}

#[test]
fn a_capture_after_close_is_rejected() {
    // A delta append after the merge closed the hook (S4).
    let mut trace = correct_trace();
    trace.insert(
        18,
        Event::DeltaAppended {
            page: page(1),
            image: image(11),
        },
    );
    assert_rejected("append after close", &trace, 18, "appends nothing");
    // A hook that captures after every partition was merged.
    let mut trace = correct_trace();
    trace[20] = Event::HookDecided {
        page: page(0),
        capture: Capture::OldImageFromFile,
        image: image(40),
    };
    assert_rejected(
        "capture after merge",
        &trace,
        20,
        "after every partition was merged",
    );
}

#[test]
fn a_merge_of_a_different_delta_is_rejected() {
    let mut trace = correct_trace();
    trace[18] = Event::Merge {
        partition: P0,
        delta: vec![(0, image(20)), (2, image(21))],
    };
    assert_rejected("merge", &trace, 18, "the model's delta");
}

#[test]
fn steps_out_of_the_protocols_order_are_rejected() {
    // The checkpoint writes page 2 before page 0.
    let mut trace = correct_trace();
    let page_0: Vec<Event> = trace.drain(1..4).collect();
    trace.splice(4..4, page_0);
    assert_rejected("page order", &trace, 1, "writes page 0");
    // S ends before its last page write returned (C2).
    let mut trace = correct_trace();
    trace.swap(6, 7);
    assert_rejected(
        "end before write",
        &trace,
        6,
        "does not allow EndCheckpoint",
    );
    // The copier announces while a hook call is in flight (the hook lock).
    let mut trace = correct_trace();
    let announce = trace.remove(13);
    trace.insert(10, announce);
    assert_rejected("announce in hook", &trace, 10, "does not allow Announce");
    // The merge closes before S ended (S5: the merge waits for S), after a copy that ran
    // before S wrote anything.
    let mut trace = correct_trace();
    let mut copy: Vec<Event> = trace.drain(13..18).collect();
    copy[1] = Event::ChunkRead {
        partition: P0,
        first: 0,
        images: vec![image(10), image(11)],
    };
    trace.splice(1..1, copy);
    assert_rejected("close before S ends", &trace, 5, "does not allow Close");
}

#[test]
fn a_trace_that_stops_before_the_merge_is_rejected_unless_cancelled() {
    let mut trace = correct_trace();
    trace.truncate(18);
    assert_rejected(
        "no merge",
        &trace,
        18,
        "ends before every partition is merged",
    );
    trace.push(Event::Cancelled);
    let conformance = snapshot_trace::check(&trace, DeltaPolicy::Full).unwrap();
    assert_eq!(conformance.stopped_at_cancel, Some(18));
}
