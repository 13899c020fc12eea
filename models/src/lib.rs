//! Stateright models of deltasnap's protocols. Each model is one file with a `State` struct and an
//! `Action` enum named after the engine's nouns, `always` and `sometimes` properties, a catalogue
//! of seeded bugs that the checker must find, and a test pinning the exact number of unique states
//! at the default bounds.
//!
//! - [`cut`]: writers, the epoch cut and checkpoint images (K1, K2);
//! - [`recovery`]: redo log, checkpoint durability steps, crash and recovery (R1, C3);
//! - [`cluster`]: the two-phase cluster snapshot over a lossy network (stateright actors);
//! - [`snapshot`]: the online snapshot protocol, driving `deltasnap::snapshot::protocol` itself (S1–S5);
//! - [`snapshot_trace`]: checks that a recorded engine snapshot trace is a behaviour of [`snapshot`];
//!
//! [`registry`] lists them for the `deltasnap-models` binary. Imports run one way: `registry` ->
//! the models -> [`spec`] (what a model declares) -> [`check`] (running the checker).

pub mod check;
pub mod cluster;
pub mod cut;
pub mod recovery;
pub mod registry;
pub mod snapshot;
pub mod snapshot_trace;
pub mod spec;
