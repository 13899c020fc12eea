//! A plain build: no `--cfg deltasnap_testing` and no checker cfg, as a developer's
//! `cargo test --workspace` builds it. Every other test file of this crate needs one of those
//! cfgs and compiles to nothing here; run the tiers with `cargo xtask verify`, or one file with
//! `RUSTFLAGS="--cfg deltasnap_testing" CARGO_TARGET_DIR=target-testing cargo test -p
//! deltasnap-verification --test <name>` (README.md, "Running").
//!
//! What this build does check: the engine holds no test machinery. No seeded bug can be on, and
//! the switch is a constant the compiler folds (`deltasnap::bugs::active` is a `const fn`
//! returning `false`, so every `if bugs::active(Bug::X) { … }` on the write path is dead code);
//! no snapshot trace is recorded (`deltasnap::snapshot::trace::enabled` likewise).
#![cfg(not(any(deltasnap_testing, deltasnap_loom, deltasnap_shuttle)))]

use deltasnap::bugs::{self, Bug};
use deltasnap::snapshot::trace;

// Evaluated by the compiler: if the switch or the recorder were not constant `false` in this
// build, this file would not compile.
const _: () = {
    let mut i = 0;
    while i < Bug::ALL.len() {
        assert!(!bugs::active(Bug::ALL[i]));
        i += 1;
    }
    assert!(!trace::enabled());
};

/// Its name is the note `cargo test` shows: the tiers were skipped in this build.
#[test]
fn tiers_skipped_run_cargo_xtask_verify_or_cfg_deltasnap_testing() {
    for bug in Bug::ALL {
        assert!(!bugs::active(bug), "{} is on in a plain build", bug.name());
    }
    assert!(!trace::enabled());
    eprintln!(
        "deltasnap-verification: the tiers need --cfg deltasnap_testing (cargo xtask verify); \
         this plain build ran none of them"
    );
}
