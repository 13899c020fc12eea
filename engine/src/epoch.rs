//! Epochs: which checkpoint every write belongs to, and the cut that closes an epoch.
//!
//! The current epoch is an immutable [`EpochState`] published through [`Published`] (arc-swap
//! under std). A writer *registers* in the epoch it loaded by incrementing that epoch's
//! active-writer count; the checkpointer's cut publishes the next epoch and then waits until the
//! old epoch has no active writer (a grace period that blocks only the checkpointer, never a
//! writer). After the drain, the old epoch's dirty set is complete and frozen.
//!
//! The registration race. A writer can load epoch `E`, be preempted while the cut publishes
//! `E+1` and drains `E` (finding no writers), and only then register in `E`. Its write would be
//! tagged `E` after `E`'s dirty set was frozen: checkpoint `E` would miss it (K2). So registration
//! is a handshake:
//!
//! ```text
//! writer:      active[E] += 1 ; fence(SeqCst) ; reload current ; if != E { active[E] -= 1 ; retry }
//! checkpoint:  publish E+1    ; fence(SeqCst) ; wait until active[E] == 0
//! ```
//!
//! The two fences are ordered one way or the other in the single total order of `SeqCst`
//! fences: either the checkpointer's drain sees the writer's increment (and waits for it), or
//! the writer's reload sees `E+1` (and retries). `fence(SeqCst)` is used rather than `SeqCst`
//! accesses because loom treats `SeqCst` accesses as `AcqRel` but models fences exactly (K1, K2).
//!
//! This module is public (hidden from the docs) only so that the verification crate's loom and
//! shuttle suites can drive it directly; it is not part of the embedding API.

use crate::bugs::{self, Bug};
use crate::sync::atomic::{fence, AtomicU64, Ordering};
use crate::sync::{spin_yield, Arc, Mutex, Published};
use crate::types::{Epoch, PageId};
use std::collections::BTreeSet;

/// One epoch: its number, how many writers are inside it, and what it dirtied.
#[derive(Debug)]
pub struct EpochState {
    pub epoch: Epoch,
    active_writers: AtomicU64,
    /// Pages whose first write in this epoch has been applied (the checkpoint's work list).
    dirty_pages: Mutex<BTreeSet<PageId>>,
    /// Whether anything besides pages changed in this epoch (allocation, partition create or
    /// drop, metadata): a checkpoint is needed even with no dirty page.
    other_changes: AtomicU64,
}

impl EpochState {
    fn new(epoch: Epoch) -> Self {
        EpochState {
            epoch,
            active_writers: AtomicU64::new(0),
            dirty_pages: Mutex::new(BTreeSet::new()),
            other_changes: AtomicU64::new(0),
        }
    }

    /// Records that `page` was first written in this epoch.
    pub fn mark_dirty(&self, page: PageId) {
        self.dirty_pages.lock().insert(page);
    }

    /// Records a change other than a page write.
    pub fn mark_changed(&self) {
        self.other_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether anything was written in this epoch so far.
    pub fn has_changes(&self) -> bool {
        self.other_changes.load(Ordering::Relaxed) != 0 || !self.dirty_pages.lock().is_empty()
    }

    /// The frozen dirty set, in (partition, index) order. Only meaningful after the drain.
    pub fn take_dirty_pages(&self) -> BTreeSet<PageId> {
        std::mem::take(&mut *self.dirty_pages.lock())
    }

    #[cfg(test)]
    pub(crate) fn active_writers(&self) -> u64 {
        self.active_writers.load(Ordering::Acquire)
    }
}

/// The epoch clock shared by writers and the checkpointer.
#[derive(Debug)]
pub struct Epochs {
    current: Published<EpochState>,
}

/// Proof of registration in an epoch; leaving the epoch is dropping it.
#[derive(Debug)]
#[must_use = "dropping the guard leaves the epoch at once"]
pub struct EpochGuard {
    state: Arc<EpochState>,
}

impl EpochGuard {
    pub fn epoch(&self) -> Epoch {
        self.state.epoch
    }

    pub fn state(&self) -> &EpochState {
        &self.state
    }
}

impl Drop for EpochGuard {
    fn drop(&mut self) {
        // Release: the writer's effects (page image, dirty mark) happen before the drain sees
        // the count reach zero.
        self.state.active_writers.fetch_sub(1, Ordering::Release);
    }
}

impl Epochs {
    /// Starts at `epoch` (after recovery: the last completed checkpoint + 1).
    pub fn new(epoch: Epoch) -> Self {
        Epochs {
            current: Published::new(Arc::new(EpochState::new(epoch))),
        }
    }

    /// The current epoch number (it may change as soon as this returns).
    pub fn current_epoch(&self) -> Epoch {
        self.current.load().epoch
    }

    pub fn current(&self) -> Arc<EpochState> {
        self.current.load()
    }

    /// Registers the calling writer in the current epoch (the handshake of the module doc).
    pub fn enter(&self) -> EpochGuard {
        loop {
            let state = self.current.load();
            state.active_writers.fetch_add(1, Ordering::Relaxed);
            if bugs::active(Bug::SkipRegistrationRecheck) {
                return EpochGuard { state };
            }
            fence(Ordering::SeqCst);
            if self.current.load().epoch == state.epoch {
                return EpochGuard { state };
            }
            // The cut passed us between load and registration: leave and register in the new
            // epoch. Nothing was done in the old one.
            state.active_writers.fetch_sub(1, Ordering::Release);
            spin_yield();
        }
    }

    /// The cut: publishes the next epoch, then waits until no writer is active in the old one.
    /// Returns the old epoch, whose dirty set is now frozen.
    pub fn cut(&self) -> Arc<EpochState> {
        let current = self.current.load();
        let next = Arc::new(EpochState::new(current.epoch + 1));
        let old = self.current.publish(next);
        debug_assert_eq!(
            old.epoch, current.epoch,
            "the cut is only run by the checkpointer"
        );
        fence(Ordering::SeqCst);
        if bugs::active(Bug::DrainDoesNotWait) {
            return old;
        }
        let mut spins: u32 = 0;
        // Acquire pairs with the writers' Release in `EpochGuard::drop`.
        while old.active_writers.load(Ordering::Acquire) != 0 {
            spins = spins.saturating_add(1);
            if spins < 64 || cfg!(any(deltasnap_loom, deltasnap_shuttle)) {
                spin_yield();
            } else {
                // A writer inside the epoch holds a page latch for a redo append at most; a
                // short sleep keeps the drain from burning a core that writer may need.
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_returns_the_old_epoch_and_new_writers_join_the_next() {
        let epochs = Epochs::new(5);
        let guard = epochs.enter();
        assert_eq!(guard.epoch(), 5);
        drop(guard);
        let old = epochs.cut();
        assert_eq!(old.epoch, 5);
        assert_eq!(old.active_writers(), 0);
        assert_eq!(epochs.enter().epoch(), 6);
    }

    #[test]
    fn cut_waits_for_a_writer_of_the_old_epoch() {
        let epochs = Arc::new(Epochs::new(1));
        let guard = epochs.enter();
        let cutter = {
            let epochs = Arc::clone(&epochs);
            std::thread::spawn(move || epochs.cut().epoch)
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !cutter.is_finished(),
            "the drain returned while a writer of epoch 1 was active"
        );
        assert_eq!(
            epochs.current_epoch(),
            2,
            "the next epoch is published before the drain"
        );
        drop(guard);
        assert_eq!(cutter.join().unwrap(), 1);
    }
}
