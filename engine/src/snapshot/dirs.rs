//! Durable directory creation for snapshots and restores.

use std::path::Path;

use crate::bugs::{self, Bug};
use crate::error::{IoContext, Result};
use crate::sync::Arc;
use crate::vfs::Vfs;

/// Creates `dir` and its missing parents so that they survive a power cut: a new directory's
/// entry is durable only once its parent is fsynced (the `vfs` contract; `SimFs` rule 3), so this
/// fsyncs the parent of every directory it created, from the first ancestor that already existed
/// down to `dir`'s parent.
///
/// It also fsyncs the parents of the ancestors that already existed (and of `dir` itself if it
/// existed), up to the root: one of them may have been created a moment ago by a concurrent
/// caller (two restores into sibling directories, two snapshots into one new target) that has
/// not fsynced its parent yet, and returning before that would let a power
/// cut take our directory with it. A parent we may not open (permission denied) is skipped and
/// logged: that directory was not ours to make durable; any other failure is returned.
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
    if !missing.is_empty() {
        vfs.create_dir_all(dir).ctx("create directory", dir)?;
    }
    if bugs::active(Bug::SnapshotDirsNotSynced) {
        return Ok(());
    }
    for created in missing.iter().rev() {
        vfs.sync_dir(parent_of(created))
            .ctx("fsync the parent of a new directory", parent_of(created))?;
    }
    // Even when `dir` existed: a concurrent caller may have just made it (two snapshots into one
    // new target) and not fsynced its parent yet.
    let mut existing = match missing.last() {
        Some(top) => top.parent(),
        None => Some(dir),
    };
    while let Some(path) = existing.filter(|p| !p.as_os_str().is_empty() && p.parent().is_some()) {
        match vfs.sync_dir(parent_of(path)) {
            Ok(()) => {}
            // A directory we may not open is not ours to make durable (and a writer that made
            // it under us could open it).
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::debug!(dir = %parent_of(path).display(), %error, "could not fsync an existing ancestor of a new directory");
            }
            Err(error) => {
                return Err(error).ctx(
                    "fsync an existing ancestor of a new directory",
                    parent_of(path),
                )
            }
        }
        existing = path.parent();
    }
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
