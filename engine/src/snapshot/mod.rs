//! Online consistent snapshots (DESIGN §4).
pub mod manifest;
pub mod verify;
