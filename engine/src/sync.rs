//! The one place that decides which concurrency primitives the engine runs on.
//!
//! Engine code imports locks, atomics and threads from here only (clippy's `disallowed-types`
//! enforces it), so that the same code runs on:
//!
//! - `std` (default build), with `arc-swap` behind [`Published`];
//! - loom (`--cfg deltasnap_loom`), which explores every interleaving and memory ordering of
//!   small scenarios exhaustively;
//! - shuttle (`--cfg deltasnap_shuttle`), which explores schedules of the whole engine randomly
//!   (random and PCT schedulers).
//!
//! The switch is a crate-prefixed `cfg`, not a Cargo feature: features unify across a workspace,
//! so a feature would leak the checker's primitives into every other crate of a build.
//!
//! The std side is adapted to look like the checkers: `lock()` is poison-free (a panic while
//! holding a lock is a bug we report by panicking, not an error the caller handles), and
//! [`Condvar::wait_timeout`] returns `(guard, timed_out)`.
//!
//! What each checker cannot see:
//! - `Arc` is `std::sync::Arc` in every mode. Shuttle does the same; under loom this means loom
//!   does not check `Arc` leaks. We trust `Arc`, and keeping one type lets files be shared as
//!   `Arc<dyn Trait>` (loom's `Arc` cannot coerce to a trait object on stable Rust).
//! - FIXME(shuttle): every shuttle atomic behaves as `SeqCst`, so memory-ordering bugs are
//!   invisible to shuttle; the loom tier is the one that checks orderings.
//! - FIXME(loom): loom treats `SeqCst` loads and stores as `AcqRel`. Code that needs a total order
//!   (the writer/cut handshake in `epoch.rs`) uses `fence(SeqCst)`, which loom does model.
//! - `arc-swap` has no loom or shuttle support. Under both checkers [`Published`] is an
//!   `RwLock<Arc<T>>` from the checker, so publish and load are visible scheduling points.

#![allow(clippy::disallowed_types)]

#[cfg(all(deltasnap_loom, deltasnap_shuttle))]
compile_error!("choose one checker: --cfg deltasnap_loom or --cfg deltasnap_shuttle, not both");

#[cfg(not(any(deltasnap_loom, deltasnap_shuttle)))]
mod imp {
    pub use std::sync::atomic;
    pub use std::sync::{
        Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, WaitTimeoutResult,
    };
    pub use std::thread;
}

#[cfg(deltasnap_loom)]
mod imp {
    pub use loom::sync::atomic;
    pub use loom::sync::{
        Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, WaitTimeoutResult,
    };
    pub use loom::thread;
}

#[cfg(deltasnap_shuttle)]
mod imp {
    pub use shuttle::sync::atomic;
    pub use shuttle::sync::{
        Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, WaitTimeoutResult,
    };
    pub use shuttle::thread;
}

pub use imp::{atomic, thread, MutexGuard, RwLockReadGuard, RwLockWriteGuard};
pub use std::sync::Arc;

use std::time::Duration;

/// A mutex whose `lock` cannot fail: poisoning means a thread panicked inside a critical section,
/// which is a bug; the next locker sees the data as it was left.
#[derive(Debug, Default)]
pub struct Mutex<T>(imp::Mutex<T>);

impl<T> Mutex<T> {
    pub fn new(value: T) -> Self {
        Mutex(imp::Mutex::new(value))
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks if nobody holds the lock; never waits.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub fn into_inner(self) -> T {
        self.0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A reader-writer lock with poison-free `read` and `write`.
#[derive(Debug, Default)]
pub struct RwLock<T>(imp::RwLock<T>);

impl<T> RwLock<T> {
    pub fn new(value: T) -> Self {
        RwLock(imp::RwLock::new(value))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A condition variable paired with [`Mutex`].
#[derive(Debug, Default)]
pub struct Condvar(imp::Condvar);

impl Condvar {
    pub fn new() -> Self {
        Condvar(imp::Condvar::new())
    }

    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits at most `timeout`; returns the guard and whether the wait timed out. The checkers
    /// do not model time: under them a timed wait may return at any scheduling point.
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        let (guard, result): (MutexGuard<'a, T>, imp::WaitTimeoutResult) = self
            .0
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (guard, result.timed_out())
    }

    pub fn notify_one(&self) {
        self.0.notify_one()
    }

    pub fn notify_all(&self) {
        self.0.notify_all()
    }
}

/// Yields to the scheduler inside a wait loop. Under the checkers this is a scheduling point
/// (loom requires one in every spin loop); under std it lets the thread we wait for run.
pub fn spin_yield() {
    thread::yield_now();
}

/// A value that is read often and replaced rarely (the current epoch): readers get an `Arc` of
/// the latest value without taking a lock.
///
/// Under std this is `arc_swap::ArcSwap` (pinned at >= 1.9.3, see DESIGN §6: 1.9.0 rewrote its
/// ordering proofs and an open report against 1.9.1 exists; this type is the one place that would
/// switch strategy). Under loom and shuttle it is an `RwLock<Arc<T>>` of the checker, so that
/// every publish and load is a scheduling point the checker sees.
pub struct Published<T> {
    #[cfg(not(any(deltasnap_loom, deltasnap_shuttle)))]
    cell: arc_swap::ArcSwap<T>,
    #[cfg(any(deltasnap_loom, deltasnap_shuttle))]
    cell: imp::RwLock<Arc<T>>,
}

impl<T> Published<T> {
    pub fn new(value: Arc<T>) -> Self {
        Published {
            #[cfg(not(any(deltasnap_loom, deltasnap_shuttle)))]
            cell: arc_swap::ArcSwap::new(value),
            #[cfg(any(deltasnap_loom, deltasnap_shuttle))]
            cell: imp::RwLock::new(value),
        }
    }

    /// The latest published value.
    pub fn load(&self) -> Arc<T> {
        #[cfg(not(any(deltasnap_loom, deltasnap_shuttle)))]
        {
            self.cell.load_full()
        }
        #[cfg(any(deltasnap_loom, deltasnap_shuttle))]
        {
            Arc::clone(&self.cell.read().unwrap_or_else(|p| p.into_inner()))
        }
    }

    /// Publishes `value`; loads that start after this returns see it (or a later value).
    /// Returns the value it replaced.
    pub fn publish(&self, value: Arc<T>) -> Arc<T> {
        #[cfg(not(any(deltasnap_loom, deltasnap_shuttle)))]
        {
            self.cell.swap(value)
        }
        #[cfg(any(deltasnap_loom, deltasnap_shuttle))]
        {
            let mut guard = self.cell.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *guard, value)
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Published<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Published").field(&self.load()).finish()
    }
}

/// Marks the calling thread as background work (`SCHED_BATCH` on Linux): the scheduler still gives
/// it its fair share, but waking it never preempts a running thread. The engine's own threads
/// (checkpointer, snapshot task) call it first, so that a writer thread on a
/// busy machine is not pushed off its core each time one of them is woken (BENCHMARKS.md). A
/// no-op elsewhere and under the checkers; a refusal is logged and ignored.
pub fn mark_background_thread() {
    #[cfg(all(target_os = "linux", not(any(deltasnap_loom, deltasnap_shuttle))))]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param; pid 0 is the calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not mark a background thread SCHED_BATCH"
            );
        }
    }
}
