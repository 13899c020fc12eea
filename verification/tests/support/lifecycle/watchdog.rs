//! The lifecycle tier's watchdog: every thread that calls the engine owns a [`Slot`] and writes
//! the call it is about to make into it ([`Watch::call`]), so that a call that does not return
//! within the bound is reported with the call of every thread still inside one. The test's main
//! thread polls [`Watch::stuck`]; the stuck threads are leaked (an engine call cannot be
//! interrupted), and the main thread panics with the report.
//!
//! A process-wide panic hook counts panics on every thread ([`panics`]): an engine thread that
//! panics fails the program even if nobody joins it. The one panic the tier provokes on purpose
//! (a checkpoint listener that panics, [`DELIBERATE_PANIC`]) is not counted and not printed: the
//! engine must turn it into `Error::Poisoned`, which the tier checks where the call returns.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// The message of the listener's deliberate panic.
pub const DELIBERATE_PANIC: &str = "lifecycle-sim: deliberate checkpoint listener panic";

/// One thread's call in flight.
#[derive(Debug)]
pub struct Slot {
    pub thread: String,
    current: Mutex<Option<(String, Instant)>>,
    /// The calls this thread made, for the failure report ("after …").
    last_done: Mutex<Option<String>>,
}

/// The slots, the calls counter and the first violation of one program.
pub struct Watch {
    slots: Mutex<Vec<Arc<Slot>>>,
    calls: AtomicU64,
    failure: Mutex<Option<String>>,
    stop: AtomicBool,
    pub bound: Duration,
}

impl Watch {
    pub fn new(bound: Duration) -> Watch {
        Watch {
            slots: Mutex::new(Vec::new()),
            calls: AtomicU64::new(0),
            failure: Mutex::new(None),
            stop: AtomicBool::new(false),
            bound,
        }
    }

    /// A new slot for `thread` (slots are never removed: a program has a few dozen).
    pub fn slot(&self, thread: impl Into<String>) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            thread: thread.into(),
            current: Mutex::new(None),
            last_done: Mutex::new(None),
        });
        self.slots.lock().unwrap().push(Arc::clone(&slot));
        slot
    }

    /// Runs `call` as `what` on `slot`'s thread. A panic that escapes it is a violation, returned
    /// as `Err` with its message (the deliberate listener panic too: it must come back as
    /// `Error::Poisoned`).
    pub fn call<T>(&self, slot: &Slot, what: &str, call: impl FnOnce() -> T) -> Result<T, String> {
        *slot.current.lock().unwrap() = Some((what.to_string(), Instant::now()));
        let outcome = panic::catch_unwind(AssertUnwindSafe(call));
        *slot.current.lock().unwrap() = None;
        *slot.last_done.lock().unwrap() = Some(what.to_string());
        self.calls.fetch_add(1, Ordering::Relaxed);
        outcome.map_err(|payload| {
            let text = payload_text(payload.as_ref());
            if text.contains(DELIBERATE_PANIC) {
                format!("{what}: the listener's panic escaped the call instead of Error::Poisoned")
            } else {
                format!("{what}: panicked: {text}")
            }
        })
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Records a violation (the first one is kept) and asks every thread to stop.
    pub fn fail(&self, violation: String) {
        let mut failure = self.failure.lock().unwrap();
        if failure.is_none() {
            *failure = Some(violation);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap().clone()
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// If a call has been running for longer than the bound: the report of every call in flight.
    pub fn stuck(&self) -> Option<String> {
        let slots = self.slots.lock().unwrap();
        let now = Instant::now();
        let hung = slots.iter().any(|slot| {
            slot.current
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|(_, since)| now - *since > self.bound)
        });
        if !hung {
            return None;
        }
        let mut report = format!(
            "a call did not return within {:?}; calls in flight:",
            self.bound
        );
        for slot in slots.iter() {
            if let Some((what, since)) = slot.current.lock().unwrap().as_ref() {
                let before = slot.last_done.lock().unwrap().clone().unwrap_or_default();
                report.push_str(&format!(
                    "\n  thread {}: {what} (for {:.1} s; its previous call: {before})",
                    slot.thread,
                    (now - *since).as_secs_f64()
                ));
            }
        }
        if let Some(failure) = self.failure() {
            report.push_str(&format!("\n  (an earlier violation: {failure})"));
        }
        let deliberate = deliberate_panics();
        if deliberate > 0 {
            report.push_str(&format!(
                "\n  (the test's checkpoint listener panicked on purpose {deliberate} time(s) so far)"
            ));
        }
        Some(report)
    }
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text payload".into())
}

static PANICS: AtomicU64 = AtomicU64::new(0);
static FIRST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static DELIBERATE: AtomicU64 = AtomicU64::new(0);
static HOOK: Once = Once::new();

/// Installs the hook (once).
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let text = payload_text(info.payload());
            if text == DELIBERATE_PANIC {
                DELIBERATE.fetch_add(1, Ordering::SeqCst);
                return;
            }
            PANICS.fetch_add(1, Ordering::SeqCst);
            let thread = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string();
            FIRST_PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| format!("thread {thread}: {text}"));
            default(info);
        }));
    });
}

/// Panics other than the deliberate one since the process started, and the first one's text.
pub fn panics() -> (u64, Option<String>) {
    (
        PANICS.load(Ordering::SeqCst),
        FIRST_PANIC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    )
}

/// How often the deliberate listener panic fired.
pub fn deliberate_panics() -> u64 {
    DELIBERATE.load(Ordering::SeqCst)
}
