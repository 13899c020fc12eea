//! Helpers of the lifecycle regression tests (`lifecycle_*.rs` of issue 11 defects 2, 3, 6, 9):
//! a watchdog that turns a hang into an error, a listener that holds a checkpoint at its cut,
//! and the lock that keeps the process-wide seeded-bug switch to one check at a time.
// Each test file uses a different part.
#![allow(dead_code)]

use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deltasnap::bugs::{self, Bug};
use deltasnap::{CheckpointCut, CheckpointListener};

/// How long a check may take before it counts as hung (L2: every public call returns).
pub const LIMIT: Duration = Duration::from_secs(10);

/// The seeded-bug switch is process-wide: one check at a time in a test binary. Switches every
/// bug off.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
    guard
}

/// Runs `check` with `bug` switched on, then off again.
pub fn with_bug<T>(bug: Bug, check: impl FnOnce() -> T) -> T {
    bugs::set(bug, true);
    let result = panic::catch_unwind(AssertUnwindSafe(check));
    bugs::set(bug, false);
    result.unwrap_or_else(|payload| panic::resume_unwind(payload))
}

/// Runs `call` (a whole check, whose own waits use [`LIMIT`]) on its own thread and returns
/// its value, or an error naming `what` if it panicked or has not returned within three times
/// [`LIMIT`] (a hang: its thread is left behind).
pub fn bounded<T: Send + 'static>(
    what: &str,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let _ = sender.send(panic::catch_unwind(AssertUnwindSafe(call)));
        })
        .expect("spawn a bounded call");
    match receiver.recv_timeout(3 * LIMIT) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(payload)) => Err(format!("{what} panicked: {}", panic_message(&*payload))),
        Err(_) => Err(format!("{what} hung: no result within {:?}", 3 * LIMIT)),
    }
}

/// Waits up to [`LIMIT`] for the result of a call [`spawn_call`] started.
pub fn receive<T>(
    what: &str,
    receiver: &mpsc::Receiver<std::thread::Result<T>>,
) -> Result<T, String> {
    match receiver.recv_timeout(LIMIT) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(payload)) => Err(format!("{what} panicked: {}", panic_message(&*payload))),
        Err(_) => Err(format!("{what} hung: no result within {LIMIT:?}")),
    }
}

/// Starts `call` on its own thread; [`receive`] its result.
pub fn spawn_call<T: Send + 'static>(
    what: &str,
    call: impl FnOnce() -> T + Send + 'static,
) -> mpsc::Receiver<std::thread::Result<T>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let _ = sender.send(panic::catch_unwind(AssertUnwindSafe(call)));
        })
        .expect("spawn a call");
    receiver
}

pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Holds the checkpoint at `on_checkpoint_begin` while armed (after its cut, before any page
/// is written).
#[derive(Default)]
pub struct HoldAtBegin {
    /// (armed, a checkpoint is held)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl HoldAtBegin {
    pub fn arm(&self) {
        self.state.lock().unwrap().0 = true;
    }

    /// Waits until a checkpoint is held.
    pub fn wait_held(&self) -> Result<(), String> {
        let deadline = Instant::now() + LIMIT;
        let mut state = self.state.lock().unwrap();
        while !state.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("no checkpoint reached the gate".into());
            }
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
        Ok(())
    }

    pub fn release(&self) {
        self.state.lock().unwrap().0 = false;
        self.changed.notify_all();
    }
}

impl CheckpointListener for HoldAtBegin {
    fn on_checkpoint_begin(&self, _cut: &CheckpointCut) {
        let mut state = self.state.lock().unwrap();
        if !state.0 {
            return;
        }
        state.1 = true;
        self.changed.notify_all();
        while state.0 {
            state = self.changed.wait(state).unwrap();
        }
        state.1 = false;
    }
}
