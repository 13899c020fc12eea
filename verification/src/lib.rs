//! Verification suites over the real engine code. The tiers and how to run them:
//!
//! - loom (`RUSTFLAGS="--cfg deltasnap_loom"`, release, its own target directory):
//!   `tests/loom_*.rs`, exhaustive over small scenarios of the concurrency primitives;
//! - shuttle (`RUSTFLAGS="--cfg deltasnap_shuttle"`): `tests/shuttle_*.rs`.
//!
//! `cargo xtask verify` runs each in the right configuration. Under a normal build these test
//! files compile to nothing.
