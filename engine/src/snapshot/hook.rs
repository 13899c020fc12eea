//! The per-partition *hook lock* of the snapshot protocol: one [`PartitionSnapshot`] and the I/O
//! it steers (the delta sink, the partition file it reads old images from), behind one mutex and
//! one condition variable.
//!
//! The protocol's locking contract (`protocol` module docs) asks for a lock held from the
//! checkpointer's decision for page `i` through the delta append **and the partition-file write
//! of `i`**. A mutex guard cannot be held across the checkpointer's write (the checkpointer keeps
//! the listener's guard as a `Box<dyn Any + Send>`, and a mutex held across file I/O would also
//! block `cancel`), so the cell splits the lock in two:
//!
//! - the **mutex** makes each transition atomic: the decision and the capture it asks for (the
//!   delta append, or the read of the old image and its append) run in one critical section;
//! - the protocol's **hook in flight** extends the lock over the file write:
//!   [`before_page_write`](HookCell::before_page_write) leaves the call in flight and returns a
//!   [`HookCall`] whose drop, after the checkpointer's file write, calls `page_write_done` and wakes
//!   the waiters. The copier's and the merge's steps run through [`when_idle`](HookCell::when_idle),
//!   which waits until no call is in flight.
//!
//! What this upholds (DESIGN §4):
//!
//! - **S4**: the merge's `close` is a [`when_idle`](HookCell::when_idle) step, so it cannot run
//!   between a decision and its append; every decision after it is `Capture::Closed`. The delta
//!   the merge reads after `close` can no longer grow, and it holds every capture decided before.
//! - **S1/S3 for [`DeltaPolicy::CursorAware`](super::protocol::DeltaPolicy::CursorAware)**: a
//!   decision "the copier will read page `i` after this write" holds only if the copier cannot
//!   `announce` the chunk holding `i` and read its old bytes before the write lands. `announce` is
//!   a [`when_idle`](HookCell::when_idle) step and the call stays in flight until the write
//!   returned, so it cannot.
//!
//! Transitions that must not wait for a call in flight go through [`update`](HookCell::update):
//! `cancel` (allowed in the middle of a call: the protocol's contract 4) and `checkpoint_ended`
//! (called by the checkpointer itself, which holds no call then).
//!
//! The cell is generic over the I/O it guards so that the engine's snapshot task (a `DeltaFile`
//! and a `VfsFile`) and the loom tier (`verification/tests/loom_snapshot_hook.rs`,
//! `loom_cursor_window.rs`: in-memory pages) drive the very same locking code. Its mutex and
//! condition variable come from [`crate::sync`], so loom and shuttle see every step.

use crate::bugs::{self, Bug};
use crate::snapshot::protocol::{Capture, PartitionSnapshot, ProtocolError};
use crate::snapshot::trace;
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What the hook lock guards: the protocol state and the I/O it steers.
#[derive(Debug)]
pub struct HookState<T> {
    pub protocol: PartitionSnapshot,
    pub io: T,
    steps_waited: u64,
}

impl<T> HookState<T> {
    /// How many [`when_idle`](HookCell::when_idle) steps found a hook call in flight and waited
    /// for it: the contention the hook lock resolved (the loom tier asserts it happened).
    pub fn steps_waited(&self) -> u64 {
        self.steps_waited
    }
}

/// One partition's hook lock. See the module docs.
#[derive(Debug)]
pub struct HookCell<T> {
    state: Mutex<HookState<T>>,
    /// Notified whenever a hook call ends (and after [`update`](Self::update)), waking the steps
    /// that wait in [`when_idle`](Self::when_idle).
    changed: Condvar,
}

impl<T> HookCell<T> {
    pub fn new(protocol: PartitionSnapshot, io: T) -> Self {
        HookCell {
            state: Mutex::new(HookState {
                protocol,
                io,
                steps_waited: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// The checkpointer's hook before it writes page `index`: decides under the lock, runs
    /// `capture` with the decision in the same critical section (it performs the delta append the
    /// decision asks for), and leaves the hook call in flight. The returned [`HookCall`] must be
    /// held across the partition-file write of `index` and dropped right after it.
    ///
    /// `capture` runs for every decision, also `Nothing` and `Closed`. If the protocol refuses
    /// the call (a call already in flight), nothing runs and no call is in flight.
    pub fn before_page_write<R>(
        self: &Arc<Self>,
        index: u32,
        capture: impl FnOnce(Capture, &mut HookState<T>) -> R,
    ) -> Result<(HookCall<T>, R), ProtocolError> {
        let mut state = self.state.lock();
        let decision = state.protocol.before_page_write(index)?;
        if bugs::active(Bug::CloseIgnoresHookInFlight) {
            // Seeded bug: the call ends at the decision and the capture takes the lock again, so
            // `close` (which waits only for calls in flight) can slip in before the append (S4).
            end_call(&mut state, index);
            drop(state);
            self.changed.notify_all();
            let mut state = self.state.lock();
            let captured = capture(decision, &mut state);
            drop(state);
            return Ok((HookCall::ended(self, index), captured));
        }
        let captured = capture(decision, &mut state);
        if bugs::active(Bug::CursorDecisionNotAtomic) {
            // Seeded bug: the call ends before the file write, so the copier can announce and
            // read the page before the write a cursor-aware decision relied on (S1/S3).
            end_call(&mut state, index);
            drop(state);
            self.changed.notify_all();
            return Ok((HookCall::ended(self, index), captured));
        }
        drop(state);
        Ok((
            HookCall {
                cell: Arc::clone(self),
                index,
                in_flight: true,
            },
            captured,
        ))
    }

    /// Runs a copier or merge step (`announce`, `chunk_copied`, `copy_done`, `close`) once no
    /// hook call is in flight, under the lock.
    pub fn when_idle<R>(&self, step: impl FnOnce(&mut HookState<T>) -> R) -> R {
        let mut state = self.state.lock();
        if state.protocol.hook_in_flight().is_some() {
            state.steps_waited += 1;
            while state.protocol.hook_in_flight().is_some() {
                state = self.changed.wait(state);
            }
        }
        step(&mut state)
    }

    /// Runs a transition that does not wait for a call in flight (`cancel`, `checkpoint_ended`),
    /// then wakes the waiters.
    pub fn update<R>(&self, step: impl FnOnce(&mut HookState<T>) -> R) -> R {
        let mut state = self.state.lock();
        let result = step(&mut state);
        drop(state);
        self.changed.notify_all();
        result
    }

    /// The lock itself, for reads that need no transition (the copier's source file, the merge's
    /// delta after `close`).
    pub fn lock(&self) -> MutexGuard<'_, HookState<T>> {
        self.state.lock()
    }
}

/// `page_write_done`, recorded in the snapshot trace inside the critical section (`trace`).
fn end_call<T>(state: &mut HookState<T>, index: u32) {
    let done = state.protocol.page_write_done(index);
    if let Err(error) = done.inspect(|()| trace::page_write_done(index)) {
        debug_assert!(false, "page_write_done({index}) refused: {error}");
    }
}

/// A hook call in flight: dropping it (after the checkpointer's partition-file write) ends the
/// call with `page_write_done` and wakes the steps waiting in [`HookCell::when_idle`].
#[must_use = "dropping the call ends it: hold it across the partition-file write"]
#[derive(Debug)]
pub struct HookCall<T> {
    cell: Arc<HookCell<T>>,
    index: u32,
    /// False only under a seeded bug that ended the call early.
    in_flight: bool,
}

impl<T> HookCall<T> {
    fn ended(cell: &Arc<HookCell<T>>, index: u32) -> Self {
        HookCall {
            cell: Arc::clone(cell),
            index,
            in_flight: false,
        }
    }

    /// The page whose write this call covers.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl<T> Drop for HookCall<T> {
    fn drop(&mut self) {
        if !self.in_flight {
            return;
        }
        let mut state = self.cell.state.lock();
        end_call(&mut state, self.index);
        drop(state);
        self.cell.changed.notify_all();
    }
}
