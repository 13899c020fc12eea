//! Loom over the epoch handshake (engine `epoch.rs`): if writer registration or the cut's drain
//! were wrong, a write could land in an epoch whose dirty set was already frozen (K2) or a
//! thread's epochs could go backwards (K1).
#![cfg(deltasnap_loom)]

use std::sync::Arc;

use deltasnap::bugs::{self, Bug};
use deltasnap::epoch::Epochs;
use deltasnap::{PageId, PartitionId};
use deltasnap_verification::kill;
use loom::sync::atomic::{AtomicU64, Ordering};

fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    // `LOOM_MAX_PREEMPTIONS` (set by `cargo xtask verify`) wins; bound 3 by default keeps the
    // 3-thread scenarios to about a second while covering every interleaving with up to three
    // preemptions, more than the handshake's two racing steps (register/re-check against
    // publish/drain) need.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(move || {
        kill::iteration();
        f()
    });
}

/// Two writers and one cut. Each writer registers, records its epoch and marks its page dirty;
/// the checkpointer cuts and takes the frozen dirty set. K2: a write of the old epoch is in the
/// frozen set, a write of the new epoch is not.
fn writers_against_the_cut() {
    let epochs = Arc::new(Epochs::new(1));
    let receipts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            let epochs = Arc::clone(&epochs);
            let receipts = Arc::clone(&receipts);
            loom::thread::spawn(move || {
                let guard = epochs.enter();
                guard.state().mark_dirty(PageId::new(PartitionId(0), w));
                receipts[w as usize].store(guard.epoch(), Ordering::Release);
            })
        })
        .collect();
    let old = epochs.cut();
    let frozen = old.take_dirty_pages();
    for writer in writers {
        writer.join().unwrap();
    }
    for w in 0..2u32 {
        let epoch = receipts[w as usize].load(Ordering::Acquire);
        let in_frozen = frozen.contains(&PageId::new(PartitionId(0), w));
        assert!(epoch == 1 || epoch == 2, "writer {w} got epoch {epoch}");
        assert_eq!(
            in_frozen,
            epoch == old.epoch,
            "K2: writer {w} wrote in epoch {epoch}, frozen dirty set of epoch {} {} it",
            old.epoch,
            if in_frozen { "holds" } else { "misses" }
        );
    }
}

#[test]
fn k2_holds_for_writers_racing_the_cut() {
    bugs::set(Bug::SkipRegistrationRecheck, false);
    bugs::set(Bug::DrainDoesNotWait, false);
    model(writers_against_the_cut);
}

#[test]
#[should_panic(expected = "K2")]
fn seeded_bug_registration_without_recheck_is_caught() {
    bugs::set(Bug::SkipRegistrationRecheck, true);
    model(writers_against_the_cut);
}

#[test]
#[should_panic(expected = "K2")]
fn seeded_bug_drain_that_does_not_wait_is_caught() {
    bugs::set(Bug::DrainDoesNotWait, true);
    model(writers_against_the_cut);
}

/// K1: a write that causally follows a write of epoch E+1 never gets epoch E. Writer A writes
/// and publishes its epoch; writer B reads A's epoch and then writes: B's epoch >= A's.
fn causally_later_writes() {
    let epochs = Arc::new(Epochs::new(1));
    let seen = Arc::new(AtomicU64::new(0));
    let a = {
        let (epochs, seen) = (Arc::clone(&epochs), Arc::clone(&seen));
        loom::thread::spawn(move || {
            let guard = epochs.enter();
            seen.store(guard.epoch(), Ordering::Release);
        })
    };
    let b = {
        let (epochs, seen) = (Arc::clone(&epochs), Arc::clone(&seen));
        loom::thread::spawn(move || {
            let before = seen.load(Ordering::Acquire);
            let guard = epochs.enter();
            assert!(
                guard.epoch() >= before,
                "K1: epoch {} after a write of {before}",
                guard.epoch()
            );
        })
    };
    drop(epochs.cut());
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn k1_causally_later_writes_never_get_an_older_epoch() {
    bugs::set(Bug::SkipRegistrationRecheck, false);
    bugs::set(Bug::DrainDoesNotWait, false);
    model(causally_later_writes);
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`.
#[test]
fn kill_matrix() {
    kill::run_requested("loom", || {
        model(writers_against_the_cut);
        model(causally_later_writes);
    });
}
