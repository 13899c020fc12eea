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

use std::path::Path;

use crate::bugs::{self, Bug};
use crate::error::{IoContext, Result};
use crate::sync::Arc;
use crate::vfs::Vfs;

pub(crate) mod delta;
#[doc(hidden)]
pub mod hook;
pub mod manifest;
pub mod protocol;
pub(crate) mod task;
pub mod trace;
pub mod verify;

#[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
pub use task::CopyGate;
pub use task::{
    SnapshotHandle, SnapshotOptions, SnapshotProgress, CHUNK_BYTES_MAX,
    RATE_LIMIT_BYTES_PER_SEC_MIN,
};

/// The most bytes of delta entries the merge holds in memory at once, per partition (see
/// `task`'s module doc, "Merge"). Exposed for the checkers that assert the bound through
/// [`SnapshotProgress::merge_buffer_bytes_peak`].
#[doc(hidden)]
pub const MERGE_BUFFER_BYTES_MAX: u64 = delta::BUFFER_BYTES_MAX as u64;

/// Creates `dir` and its missing parents so that they survive a power cut: a new directory's
/// entry is durable only once its parent is fsynced (the `vfs` contract; `SimFs` rule 3), so this
/// fsyncs the parent of every directory it may have created, from the first ancestor that
/// already existed down to `dir`'s parent. A directory that existed is not synced again: whoever
/// made it answers for its entry.
pub(crate) fn create_dir_all_durable(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<()> {
    // The ancestors that do not exist yet, deepest first (`dir` included).
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at.filter(|p| !p.as_os_str().is_empty()) {
        if vfs.exists(path).ctx("stat directory", path)? {
            break;
        }
        missing.push(path);
        at = path.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    vfs.create_dir_all(dir).ctx("create directory", dir)?;
    if bugs::active(Bug::SnapshotDirsNotSynced) {
        return Ok(());
    }
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        vfs.sync_dir(parent)
            .ctx("fsync the parent of a new directory", parent)?;
    }
    Ok(())
}
