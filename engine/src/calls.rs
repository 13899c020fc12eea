//! The public calls in flight, so that `Engine::close` writes its final checkpoint and releases
//! the store lock only after every call that got past the open check has returned (L1, L2).
//!
//! Without it a `write`, `drop_partition` or `sync` racing `close` could log a record after the
//! final checkpoint and the lock's release, into a store the next engine already recovered.
//!
//! Entering is two atomic operations and no lock (the write path runs through it): a call
//! counts itself in, then looks at `closing`; `close` sets `closing`, then waits for the count
//! to reach zero. Both sides use `SeqCst`, so either the call sees `closing` and leaves with
//! `Error::Closed`, or `close` sees the call counted and waits for it.

use std::time::Duration;

use crate::bugs::{self, Bug};
use crate::error::{Error, Result};
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Condvar, Mutex};

/// See the module doc.
#[derive(Debug)]
pub(crate) struct CallGate {
    in_flight: AtomicU64,
    closing: AtomicBool,
    /// Held only to wait for and signal the last call's exit.
    drained_lock: Mutex<()>,
    drained: Condvar,
}

/// One call in flight; leaving is dropping it.
#[must_use = "the call counts as in flight only while the guard lives"]
pub(crate) struct Call<'a>(&'a CallGate);

impl CallGate {
    pub(crate) fn new() -> Self {
        CallGate {
            in_flight: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            drained_lock: Mutex::new(()),
            drained: Condvar::new(),
        }
    }

    /// Counts a call in, or refuses it with `Error::Closed` once `close` began.
    pub(crate) fn enter(&self) -> Result<Call<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let call = Call(self);
        if self.closing.load(Ordering::SeqCst) {
            return Err(Error::Closed); // dropping `call` counts it out
        }
        Ok(call)
    }

    /// Refuses every later call and waits for the ones in flight to return.
    pub(crate) fn close_and_drain(&self) {
        if bugs::active(Bug::CloseIgnoresCallsInFlight) {
            return;
        }
        self.closing.store(true, Ordering::SeqCst);
        let mut guard = self.drained_lock.lock();
        while self.in_flight.load(Ordering::SeqCst) != 0 {
            // The timeout only guards against a missed wakeup; exits notify.
            guard = self
                .drained
                .wait_timeout(guard, Duration::from_millis(10))
                .0;
        }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.closing.load(Ordering::SeqCst)
        {
            drop(self.0.drained_lock.lock());
            self.0.drained.notify_all();
        }
    }
}
