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
//! - `options`: [`SnapshotOptions`] and their ranges.
//! - `host`: `SnapshotHost`, the narrow view of the engine the task works through.
//! - `state`: what the hook, the task thread and the handle share.
//! - `listener`: the write hook, the `CheckpointListener` that captures into the deltas.
//! - `task`: the copier, the merge and the publish around the protocol.
//! - `handle`: [`SnapshotHandle`] and [`SnapshotProgress`], the caller's view.
//! - `unfinished`: the markers of snapshots that never published, removed at open.
//! - `delta`: the per-partition delta file; `dirs`: durable directory creation.
//! - [`verify`]: `verify_snapshot` and `restore`.
//! - [`trace`]: the protocol events a test build records, for trace validation against the model.

pub(crate) mod delta;
pub(crate) mod dirs;
pub(crate) mod handle;
#[doc(hidden)]
pub mod hook;
pub(crate) mod host;
pub(crate) mod listener;
pub mod manifest;
pub(crate) mod options;
pub mod protocol;
pub(crate) mod state;
pub(crate) mod task;
pub mod trace;
pub(crate) mod unfinished;
pub mod verify;

pub use handle::{SnapshotHandle, SnapshotProgress};
#[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
pub use options::CopyGate;
pub use options::{SnapshotOptions, CHUNK_BYTES_MAX, RATE_LIMIT_BYTES_PER_SEC_MIN};

/// The most bytes of delta entries the merge holds in memory at once, per partition (see
/// `task`'s module doc, "Merge"). Exposed for the checkers that assert the bound through
/// [`SnapshotProgress::merge_buffer_bytes_peak`].
#[doc(hidden)]
pub const MERGE_BUFFER_BYTES_MAX: u64 = delta::BUFFER_BYTES_MAX as u64;
