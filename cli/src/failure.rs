//! How a command fails: one line on stderr, `deltasnap: <what failed>: <error>`, and an exit code.
//!
//! | exit code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the command ran and found problems (a snapshot that does not verify, demo pages that differ from the reference) |
//! | 2 | usage error (reported by clap) |
//! | 3 | the command could not run (I/O error, not a store, bad argument value) |
//! | 101 | a bug: a panic, reported on one line (set `RUST_BACKTRACE=1` for the full report) |

use std::fmt;

/// Exit code of a command that ran and found problems.
pub const EXIT_PROBLEMS: i32 = 1;
/// Exit code of a command that could not run.
pub const EXIT_ERROR: i32 = 3;
/// Exit code of a panic (the Rust default, kept so that scripts see the usual value).
const EXIT_PANIC: i32 = 101;

/// Why a command failed: what it was doing and the error, and the exit code that says which
/// kind of failure it was.
#[derive(Debug)]
pub struct Failure {
    what: String,
    reason: String,
    exit_code: i32,
}

impl Failure {
    /// The command could not do `what`.
    pub fn error(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        Failure {
            what: what.into(),
            reason: reason.to_string(),
            exit_code: EXIT_ERROR,
        }
    }

    /// The command ran, and what it checked has problems.
    pub fn problems(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        Failure {
            what: what.into(),
            reason: reason.to_string(),
            exit_code: EXIT_PROBLEMS,
        }
    }

    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the error's own text holds.
        let reason = self.reason.trim().replace('\n', "; ");
        write!(f, "{}: {}", self.what, reason)
    }
}

/// The result of a command.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// Names the step an error belongs to, turning it into a [`Failure`] that exits with
/// [`EXIT_ERROR`].
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|error| Failure::error(what(), error))
    }
}

/// Reports a panic (a bug, never an expected failure) on one line and exits at once, so that a
/// panicking worker thread does not produce a second report when its scope re-panics. With
/// `RUST_BACKTRACE` set, the standard report (with the backtrace) is kept.
pub fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!("internal error (a bug in deltasnap): {message}{location}");
        eprintln!("deltasnap: {}", line.replace('\n', "; "));
        std::process::exit(EXIT_PANIC);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_one_line() {
        let failure = Failure::error("open store /x", "first\nsecond\n");
        assert_eq!(failure.to_string(), "open store /x: first; second");
        assert_eq!(failure.exit_code(), EXIT_ERROR);
    }
}
