//! Verification suites over the real engine code. The tiers and how to run them (details, replay
//! of a failing seed or schedule, and the kill matrix: `verification/README.md`):
//!
//! - loom (`RUSTFLAGS="--cfg deltasnap_loom"`, release, its own target directory):
//!   `tests/loom_*.rs`, exhaustive over small scenarios of the concurrency primitives;
//! - shuttle (`RUSTFLAGS="--cfg deltasnap_shuttle"`): `tests/shuttle_*.rs`;
//! - crash simulation on `SimFs` (`RUSTFLAGS="--cfg deltasnap_testing"`): a power cut at every I/O operation of a checkpoint
//!   or a snapshot (`tests/*crash_points*.rs`), and EIO and ENOSPC at every one of them
//!   (`tests/fault_matrix_*.rs`); the snapshot's failure sites one by one
//!   (`tests/snapshot_failure_*.rs`).
//!
//! `cargo xtask verify` runs each in the right configuration (the std tiers in `target-testing`,
//! so that a plain build's cache stays valid). Every test file is gated on its cfg: in a build
//! without one (a plain `cargo test --workspace`) they compile to nothing, and the only tests of
//! this crate are `tests/plain_build.rs`, whose doc says how to run the tiers, and the doc example
//! of `fault_fs`. The seeded-bug switch, trace recording and the copier's gate exist in the
//! engine only under these cfgs, never in a build that ships (`deltasnap::bugs`).
//!
//! Every test binary of a tier has a `kill_matrix` test for `cargo xtask killmatrix`. Its helper
//! is `kill` (only under the cfgs); the two tiers that live in `engine/tests/` (the proptest
//! conformance test and the group commit under shuttle) reach it through the engine's
//! dev-dependency on this crate. Its module doc says how to wire a new test binary in.
//!
//! `fault_fs` is the fault-injecting `Vfs` layer over any `Vfs` (the real file system or a
//! `SimFs`) shared by this crate's suites and the engine's own tests; it needs no cfg.

pub mod fault_fs;

#[cfg(any(deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
pub mod kill;
#[cfg(deltasnap_shuttle)]
pub mod shuttle_runs;
