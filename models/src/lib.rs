//! Stateright models of deltasnap's protocols. Each model is one file with a `State` struct and an
//! `Action` enum named after the engine's nouns, `always` and `sometimes` properties, a catalogue
//! of seeded bugs that the checker must find, and a test pinning the exact number of unique states
//! at the default bounds.

pub mod snapshot;
