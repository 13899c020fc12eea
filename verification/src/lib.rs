//! Verification suites over the real engine code. The tiers and how to run them (details, replay
//! of a failing seed or schedule, and the kill matrix: `verification/README.md`):
//!
//! - loom (`RUSTFLAGS="--cfg deltasnap_loom"`, release, its own target directory):
//!   `tests/loom_*.rs`, exhaustive over small scenarios of the concurrency primitives;
//! - shuttle (`RUSTFLAGS="--cfg deltasnap_shuttle"`): `tests/shuttle_*.rs`;
//! - crash simulation on `SimFs` (normal build): a power cut at every I/O operation of a checkpoint
//!   or a snapshot (`tests/*crash_points*.rs`), and EIO and ENOSPC at every one of them
//!   (`tests/fault_matrix_*.rs`); the snapshot's failure sites one by one
//!   (`tests/snapshot_failure_*.rs`).
//!
//! `cargo xtask verify` runs each in the right configuration. Under a normal build the loom and
//! shuttle files compile to nothing.
//!
//! Every test binary of a tier has a `kill_matrix` test for `cargo xtask killmatrix`. Its helper
//! is `deltasnap::bugs::kill`, in the engine crate next to the seeded-bug switches rather than
//! here, because two tiers live in `engine/tests/` (the proptest conformance test and the group
//! commit under shuttle), and those cannot depend on this crate. Its module doc says how to wire a
//! new test binary in.
