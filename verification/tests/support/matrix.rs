//! What the fault matrices (`fault_matrix_*.rs`) share: the errors they inject, a panic counter
//! that sees panics on every thread (an engine thread that panics must fail the point, even if
//! nobody joins it), a bound on every point (a hang fails the point instead of the run), and the
//! replay variable.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Once};
use std::time::Duration;

use deltasnap::vfs::FaultError;

/// The errors injected at every operation, in this order.
pub const ERRORS: [FaultError; 2] = [FaultError::Eio, FaultError::Enospc];

/// How the error shows in an `io::Error`'s text, which every error the engine reports for it
/// must carry (a clear error names its cause).
pub fn errno_text(error: FaultError) -> String {
    format!("os error {}", error.errno())
}

pub fn error_name(error: FaultError) -> &'static str {
    match error {
        FaultError::Eio => "eio",
        FaultError::Enospc => "enospc",
    }
}

pub fn error_named(name: &str) -> FaultError {
    match name {
        "eio" => FaultError::Eio,
        "enospc" => FaultError::Enospc,
        other => panic!("unknown error {other:?}: eio or enospc"),
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);
static HOOK: Once = Once::new();

/// Panics on any thread since the process started (the default hook still prints them).
pub fn panics() -> u64 {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// Runs `point` on its own thread and waits at most `limit` for it: a point that hangs or
/// panics is a violation, reported as an `Err` naming `what`. (A hung thread is left behind;
/// the matrix stops at the first violation anyway.)
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    point: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let panics_before = panics();
    let (done, result) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("fault-matrix-point".into())
        .spawn(move || {
            let _ = done.send(point());
        })
        .map_err(|e| format!("{what}: cannot spawn: {e}"))?;
    let outcome = match result.recv_timeout(limit) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(format!("{what}: hung for more than {limit:?}"));
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = thread.join();
            return Err(format!("{what}: panicked (message above)"));
        }
    };
    let _ = thread.join();
    let panics_after = panics();
    if panics_after != panics_before {
        return Err(format!(
            "{what}: {} panic(s) on an engine thread (message above)",
            panics_after - panics_before
        ));
    }
    outcome.map_err(|violation| format!("{what}: {violation}"))
}

/// A tally of point outcomes by name, printed in insertion order.
#[derive(Debug, Default)]
pub struct Tally(Vec<(String, u64)>);

impl Tally {
    pub fn add(&mut self, name: impl Into<String>) {
        let name = name.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => self.0.push((name, 1)),
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, count)| *count)
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, count)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{name} {count}")?;
        }
        Ok(())
    }
}

/// The power cuts each fault point is also followed by (as the seeds of `SimFs::crash`).
pub const CRASH_SEEDS: [u64; 3] = [1, 7, 0xdead_beef];

/// What a fault point does after the injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Carry on with the matrix's workload, close, reopen.
    Reopen,
    /// Power cut (where the matrix says), then reopen.
    Crash(u64),
}

impl Then {
    pub fn all() -> impl Iterator<Item = Then> {
        std::iter::once(Then::Reopen).chain(CRASH_SEEDS.into_iter().map(Then::Crash))
    }
}

/// The point `DELTASNAP_FAULT_POINT=<operation>:<eio|enospc>` names, to replay it alone.
pub fn replay_point() -> Option<(usize, FaultError)> {
    let text = std::env::var("DELTASNAP_FAULT_POINT").ok()?;
    let (index, error) = text
        .split_once(':')
        .expect("DELTASNAP_FAULT_POINT=<operation>:<eio|enospc>");
    Some((index.parse().unwrap(), error_named(error)))
}
