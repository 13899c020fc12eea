//! Snapshots that never published: their markers in the store (written by the task before it
//! creates anything, removed once the temporary directory is durably gone), and their removal at
//! open.

use std::path::{Path, PathBuf};

use crate::bugs::{self, Bug};
use crate::error::{IoContext, Result};
use crate::layout::{self, SNAPSHOTS_TMP_DIR};
use crate::sync::Arc;
use crate::vfs::{OpenMode, Vfs};

/// What [`remove_unfinished`] did with the markers of snapshots that never published.
#[derive(Debug, Default)]
pub(crate) struct UnfinishedCleanup {
    /// Temporary directories removed (their markers too).
    pub(crate) removed: Vec<PathBuf>,
    /// Temporary directories that could not be checked or removed; their markers are kept, so
    /// that the next open tries again.
    pub(crate) failed: Vec<PathBuf>,
}

/// Removes the temporary directories of snapshots that never published (a crash, or a failure
/// whose cleanup failed), as recorded by their markers. Called by `Engine::open`.
///
/// A temporary directory lives in the snapshot's target, outside the store (often on another
/// device, say a backup mount that is not there right now), so failing to remove it must not
/// keep the store from opening: it is logged, listed in `failed`, and its marker kept for the
/// next open. Errors on the store's own marker directory are the store's and are returned.
pub(crate) fn remove_unfinished(vfs: &Arc<dyn Vfs>, store_dir: &Path) -> Result<UnfinishedCleanup> {
    let markers = store_dir.join(SNAPSHOTS_TMP_DIR);
    let mut cleanup = UnfinishedCleanup::default();
    if !vfs.is_dir(&markers).ctx("stat", &markers)? {
        return Ok(cleanup);
    }
    for name in vfs
        .read_dir(&markers)
        .ctx("list snapshot markers", &markers)?
    {
        let marker = markers.join(&name);
        if layout::is_snapshot_marker(&name) {
            let tmp = read_marker(vfs, &marker)?;
            if layout::is_snapshot_tmp_dir(&tmp) {
                match remove_tmp_dir(vfs, &tmp) {
                    Ok(true) => {
                        tracing::info!(dir = %tmp.display(), "removed an unfinished snapshot");
                        cleanup.removed.push(tmp);
                    }
                    Ok(false) => {}
                    Err(error) if bugs::active(Bug::UnfinishedCleanupFailsOpen) => {
                        return Err(error)
                    }
                    Err(error) => {
                        tracing::warn!(dir = %tmp.display(), marker = %marker.display(), %error, "could not remove an unfinished snapshot's temporary directory; the next open tries again");
                        cleanup.failed.push(tmp);
                        continue; // keep the marker
                    }
                }
            }
        }
        vfs.remove_file(&marker)
            .ctx("remove snapshot marker", &marker)?;
    }
    vfs.sync_dir(&markers)
        .ctx("fsync snapshot markers", &markers)?;
    Ok(cleanup)
}

/// The temporary directory a marker names.
fn read_marker(vfs: &Arc<dyn Vfs>, marker: &Path) -> Result<PathBuf> {
    let file = vfs
        .open(marker, OpenMode::Read)
        .ctx("open snapshot marker", marker)?;
    let len = file
        .len()
        .ctx("stat snapshot marker", marker)?
        .min(64 * 1024);
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .ctx("read snapshot marker", marker)?;
    Ok(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Removes `tmp` durably if it exists; whether it did.
fn remove_tmp_dir(vfs: &Arc<dyn Vfs>, tmp: &Path) -> Result<bool> {
    if !vfs.exists(tmp).ctx("stat", tmp)? {
        return Ok(false);
    }
    vfs.remove_dir_all(tmp)
        .ctx("remove unfinished snapshot", tmp)?;
    if let Some(parent) = tmp.parent() {
        vfs.sync_dir(parent)
            .ctx("fsync snapshot target directory", parent)?;
    }
    Ok(true)
}
