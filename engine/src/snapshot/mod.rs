//! The online, consistent snapshot (DESIGN §4).
//!
//! A snapshot rides checkpoint `S`: at `S`'s cut it records, per partition, the logical page count
//! and the file length, then a copier copies the partition files while a write hook in the
//! checkpointer captures into a per-partition *delta* every page image the copy could miss; the
//! merge writes the delta over the copy. The result is exactly the engine state at the cut (S1).
//!
//! - [`protocol`]: the pure, IO-free per-partition state machine that decides what the hook
//!   captures and when the merge may start. The engine wraps it with I/O and a lock; the stateright
//!   model in `deltasnap-models` drives the very same code.
//! - `hook`: the per-partition hook lock around the protocol state (decide-and-capture, the hook
//!   call in flight across the checkpointer's file write, copier and merge steps that wait for it),
//!   generic over its I/O so that the loom tier drives it with in-memory pages.
//! - [`manifest`]: what a published snapshot holds (format.md §5.2).
//! - `task`: the hook, the copier, the merge and the publish around the protocol.
//! - [`verify`]: `verify_snapshot` and `restore`.
//! - [`trace`]: the protocol events a test build records, for trace validation against the model.

pub(crate) mod delta;
#[doc(hidden)]
pub mod hook;
pub mod manifest;
pub mod protocol;
pub(crate) mod task;
pub mod trace;
pub mod verify;

pub use task::{CopyGate, SnapshotHandle, SnapshotOptions, SnapshotProgress};
