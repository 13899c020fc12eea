//! Durable directory creation for snapshots and restores.

use std::path::Path;

use crate::bugs::{self, Bug};
use crate::error::{IoContext, Result};
use crate::sync::Arc;
use crate::vfs::Vfs;

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
