//! Kill mode: one cell (seeded bug × verification tier) of `cargo xtask killmatrix`.
//!
//! Every tier's test binary has a test named `kill_matrix` that does nothing unless
//! `DELTASNAP_KILL_BUG` names a seeded bug. Then it switches that bug (and no other) on, runs the
//! tier's *normal* workload with the tier's normal checks, which panic when they see the bug,
//! and prints one line per tier it covers:
//!
//! ```text
//! KILLMATRIX tier=<tier> bug=<name> caught_at=<iteration>|not-caught iterations=<n> [reason=<panic message>]
//! ```
//!
//! and passes either way, so that xtask collects every cell. The tiers are `loom`,
//! `shuttle-random`, `shuttle-pct`, `proptest` and `crash` (the model tier is the
//! `deltasnap-models` binary, which xtask runs itself). An *iteration* is the tier's unit
//! of work: one loom or shuttle execution, one proptest case, one crash or fault point. The
//! budget is the tier's own knob (`LOOM_MAX_PREEMPTIONS`, `DELTASNAP_SHUTTLE_RANDOM`,
//! `DELTASNAP_SHUTTLE_PCT`, `PROPTEST_CASES`; the crash and fault sweeps are exhaustive).
//!
//! Wiring a test binary into the matrix takes three steps:
//! 1. call [`iteration`] once at the start of every execution of the checked body (inside the
//!    `loom::model` or shuttle closure, at the top of a proptest case, per crash point);
//! 2. add the kill test, running the same workload the normal tests run:
//!    ```ignore
//!    #[test]
//!    fn kill_matrix() {
//!        deltasnap_verification::kill::run_requested("loom", || model(scenario));
//!    }
//!    ```
//!    (several workloads: run them in one closure, one after the other; the first that panics
//!    ends the cell);
//! 3. make sure `cargo xtask killmatrix` builds it: every `loom_*` and `*shuttle*` test target
//!    is picked up by glob; std ones are listed in `Mode::build_args` of
//!    `xtask/src/killmatrix.rs`.
//!
//! The switch is process-wide: xtask runs one cell per process, `--exact kill_matrix`.
//!
//! The engine keeps only the switch (`deltasnap::bugs::set`, read by `deltasnap::bugs::active`);
//! counting iterations, running a cell and printing its line are here, so that no engine build
//! holds them. Like the switch, this module exists only under `--cfg deltasnap_testing` or a
//! checker cfg.

#![allow(clippy::disallowed_types)]

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
// A plain std atomic, like the engine's switch: test bookkeeping, not synchronization the
// checkers should explore (and loom atomics cannot live in a static).
use std::sync::atomic::{AtomicU64, Ordering};

use deltasnap::bugs::{set, Bug};

/// Executions of a checked body so far (see [`iteration`]).
static ITERATIONS: AtomicU64 = AtomicU64::new(0);

/// The environment variable naming the bug to switch on.
pub const BUG_VAR: &str = "DELTASNAP_KILL_BUG";

/// The seeded bug called `name` (see [`Bug::name`]).
pub fn bug_named(name: &str) -> Option<Bug> {
    Bug::ALL.into_iter().find(|bug| bug.name() == name)
}

/// The bug `DELTASNAP_KILL_BUG` names, or `None` outside kill mode. Panics on a name that is no
/// seeded bug: a typo must not pass as "not caught".
pub fn requested() -> Option<Bug> {
    let name = std::env::var(BUG_VAR).ok()?;
    Some(bug_named(&name).unwrap_or_else(|| {
        let known: Vec<_> = Bug::ALL.iter().map(|b| b.name()).collect();
        panic!(
            "{BUG_VAR}={name} is no seeded bug (known: {})",
            known.join(", ")
        )
    }))
}

/// Counts one execution of a checked body; returns its number (from 1). Cheap, and called in
/// normal runs too.
pub fn iteration() -> u64 {
    ITERATIONS.fetch_add(1, Ordering::SeqCst) + 1
}

/// The result of one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub tier: String,
    pub bug: &'static str,
    /// The iteration whose check failed, if one did.
    pub caught_at: Option<u64>,
    pub iterations: u64,
    /// The first line of the failed check's panic message.
    pub reason: Option<String>,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KILLMATRIX tier={} bug={} caught_at=",
            self.tier, self.bug
        )?;
        match self.caught_at {
            Some(at) => write!(f, "{at}")?,
            None => write!(f, "not-caught")?,
        }
        write!(f, " iterations={}", self.iterations)?;
        if let Some(reason) = &self.reason {
            write!(f, " reason={reason}")?;
        }
        Ok(())
    }
}

/// Switches every seeded bug off but `bug`, runs `workload` (which panics when the tier's checks
/// fail), switches `bug` off again and reports whether and at which [`iteration`] it was caught.
pub fn cell(tier: &str, bug: Bug, workload: impl FnOnce()) -> Cell {
    for other in Bug::ALL {
        set(other, other == bug);
    }
    let cell = measure(tier, bug.name(), workload);
    set(bug, false);
    cell
}

/// A test binary's kill test: in kill mode, runs [`cell`] for the requested bug and prints its
/// line; otherwise does nothing.
pub fn run_requested(tier: &str, workload: impl FnOnce()) {
    if let Some(bug) = requested() {
        println!("{}", cell(tier, bug, workload));
    }
}

/// A checker's teeth: runs [`cell`] for `bug`, prints its line on stderr and panics unless the
/// workload's checks caught the bug.
pub fn assert_caught(tier: &str, bug: Bug, workload: impl FnOnce()) -> Cell {
    let cell = cell(tier, bug, workload);
    eprintln!("{cell}");
    assert!(
        cell.caught_at.is_some(),
        "seeded bug {} must be caught by the {tier} tier",
        bug.name()
    );
    cell
}

/// [`cell`] without the switch.
fn measure(tier: &str, bug: &'static str, workload: impl FnOnce()) -> Cell {
    ITERATIONS.store(0, Ordering::SeqCst);
    let outcome = panic::catch_unwind(AssertUnwindSafe(workload));
    let iterations = ITERATIONS.load(Ordering::SeqCst);
    let reason = outcome.err().map(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-text payload".into());
        let line = text.lines().next().unwrap_or_default();
        line.chars().take(400).collect::<String>()
    });
    Cell {
        tier: tier.to_string(),
        bug,
        // A check can fail before the first counted iteration (in a workload's setup): that
        // is still the first.
        caught_at: reason.as_ref().map(|_| iterations.max(1)),
        iterations,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Unit tests run in parallel: these never switch a bug on.
    #[test]
    fn a_panicking_workload_is_caught_at_its_iteration() {
        let cell = measure("unit", "some-bug", || {
            for _ in 0..5 {
                assert!(iteration() < 3, "K2: caught\nsecond line");
            }
        });
        assert_eq!(cell.caught_at, Some(3));
        assert_eq!(cell.iterations, 3);
        assert_eq!(cell.reason.as_deref(), Some("K2: caught"));
        assert_eq!(
            cell.to_string(),
            "KILLMATRIX tier=unit bug=some-bug caught_at=3 iterations=3 reason=K2: caught"
        );
        let clean = measure("unit", "some-bug", || {
            iteration();
        });
        assert_eq!(
            clean.to_string(),
            "KILLMATRIX tier=unit bug=some-bug caught_at=not-caught iterations=1"
        );
    }

    #[test]
    fn bugs_are_found_by_name() {
        for bug in Bug::ALL {
            assert_eq!(bug_named(bug.name()), Some(bug));
        }
        assert_eq!(bug_named("no-such-bug"), None);
    }
}
