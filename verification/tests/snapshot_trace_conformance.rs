//! The protocol events the engine records during a snapshot are a behaviour of the stateright
//! snapshot model (`deltasnap_models::snapshot_trace`), in both race orders of S5 and for both
//! delta policies. If the engine's hook, copier or merge stepped the protocol in an order the
//! model does not allow, captured or copied an image the model would not, or merged a different
//! delta, the check would reject the trace; the seeded bugs below show it does.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use deltasnap::bugs::{self, Bug};
use deltasnap::snapshot::trace::{self, Event};
use deltasnap::{DeltaPolicy, Manifest};
use deltasnap_models::snapshot_trace;
use support::{Fixture, Gate, HoldCutCheckpoint, SNAPSHOT_NAME};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// The copier finishes before the cut checkpoint writes its first page; writes of `S+1`
    /// land meanwhile.
    CopyBeforeCutEnds,
    /// The cut checkpoint and three more (each after overwriting every page) end before the
    /// copier reads its first chunk.
    CutEndsBeforeCopy,
}

/// Runs one snapshot of two partitions of 16 pages in `order`; returns its result and trace.
fn record(policy: DeltaPolicy, order: Order) -> (deltasnap::Result<Manifest>, Vec<Event>, Fixture) {
    let mut fixture = Fixture::new();
    let hold = Arc::new(HoldCutCheckpoint::default());
    fixture.engine.add_checkpoint_listener(hold.clone());
    let copier = Arc::new(Gate::default());
    let mut options = fixture.options();
    options.delta_policy = policy;
    match order {
        Order::CopyBeforeCutEnds => hold.armed.store(true, Ordering::SeqCst),
        Order::CutEndsBeforeCopy => options.copy_gate = Some(copier.copy_gate()),
    }
    trace::start();
    let snapshot = fixture.engine.snapshot(options).unwrap();
    match order {
        Order::CopyBeforeCutEnds => {
            support::wait_until("the copy", || snapshot.progress().copy_done);
            fixture.write_pages(|page| page.index % 3 == 0, 3);
            hold.gate.open();
        }
        Order::CutEndsBeforeCopy => {
            support::wait_until("the cut", || snapshot.progress().cut_epoch.is_some());
            for round in 4..7u8 {
                fixture.engine.checkpoint().unwrap();
                fixture.write_pages(|_| true, round);
            }
            fixture.engine.checkpoint().unwrap();
            copier.open();
        }
    }
    let result = snapshot.wait();
    // A checkpoint after the snapshot: the listener is gone, nothing more is recorded.
    fixture.write_pages(|_| true, 9);
    fixture.engine.checkpoint().unwrap();
    (result, trace::take(), fixture)
}

fn no_bugs() {
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
}

#[test]
fn both_race_orders_both_policies_are_behaviours_of_the_model() {
    let _recording = trace::exclusive();
    no_bugs();
    for order in [Order::CopyBeforeCutEnds, Order::CutEndsBeforeCopy] {
        for policy in [DeltaPolicy::Full, DeltaPolicy::CursorAware] {
            let (result, events, fixture) = record(policy, order);
            let manifest = result.unwrap();
            fixture.assert_snapshot_is_the_cut(SNAPSHOT_NAME, &manifest);
            let conformance = snapshot_trace::check(&events, policy)
                .unwrap_or_else(|mismatch| panic!("{order:?}/{policy}: {mismatch}"));
            assert_eq!(conformance.stopped_at_cancel, None);
            assert!(conformance.final_state.is_complete());
            // The scenario exercises what it claims: captures, and the race order.
            let captures = events
                .iter()
                .filter(|e| matches!(e, Event::DeltaAppended { .. }))
                .count();
            assert!(captures > 0, "{order:?}/{policy}: nothing captured");
            let later_checkpoints = events
                .iter()
                .filter(|e| matches!(e, Event::CheckpointBegin { .. }))
                .count();
            eprintln!(
                "{order:?}/{policy}: {} events, {} model steps, {captures} captures, {later_checkpoints} \
                 checkpoints after S, bounds {:?}",
                events.len(),
                conformance.actions.len(),
                conformance.model.bounds
            );
        }
    }
}

/// The hook decides to capture but drops the capture: in these scenarios the restored snapshot
/// is wrong as well, but conformance names the first event the model does not allow.
#[test]
fn seeded_capture_bugs_are_rejected_by_the_model() {
    let _recording = trace::exclusive();
    for (bug, order) in [
        (Bug::SkipNewImageCapture, Order::CopyBeforeCutEnds),
        (Bug::SkipOldImageCapture, Order::CutEndsBeforeCopy),
    ] {
        for policy in [DeltaPolicy::Full, DeltaPolicy::CursorAware] {
            no_bugs();
            bugs::set(bug, true);
            let (result, events, _fixture) = record(policy, order);
            no_bugs();
            result.unwrap();
            let mismatch = snapshot_trace::check(&events, policy).expect_err(&format!(
                "{}/{order:?}/{policy}: the model must reject the trace",
                bug.name()
            ));
            assert!(
                mismatch.reason.contains("appends") || mismatch.reason.contains("does not allow"),
                "{}: {mismatch}",
                bug.name()
            );
            eprintln!(
                "{} ({order:?}, {policy}) rejected at event {}: {}",
                bug.name(),
                mismatch.event,
                mismatch.reason
            );
        }
    }
}
