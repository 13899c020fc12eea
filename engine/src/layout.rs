//! The names of the files and directories of a store and of a snapshot (format.md §1, §5), built
//! here and nowhere else.
//!
//! ```text
//! <store>/CONTROL                      control file                 CONTROL_FILE_NAME
//! <store>/CONTROL.tmp                  control file being written   CONTROL_TMP_FILE_NAME
//! <store>/partitions/part-<id>.dat     one per partition            partition_path
//! <store>/wal/                         redo segments                WAL_DIR (names: wal::segment)
//! <store>/snapshots-tmp/<name>.pending marker of an unfinished one  snapshot_marker_path
//! <store>/LOCK                         the store lock               LOCK_FILE_NAME
//!
//! <target>/.<name>.deltasnap-tmp/      a snapshot being made        snapshot_tmp_dir
//!     partitions/part-<id>.dat         its copy of a partition      snapshot_partition_file
//!     deltas/part-<id>.delta           its delta of a partition     snapshot_delta_path
//!     manifest.json                    written last                 MANIFEST_FILE_NAME
//! ```
//!
//! The redo segments' own names (`<first-lsn>.log`, `.spare-<n>`) belong to the redo log and are
//! built in `wal::segment`, next to the parser that reads them back.

use std::io;
use std::path::{Path, PathBuf};

use crate::sync::Arc;
use crate::types::PartitionId;
use crate::vfs::Vfs;

/// Whether a store may be created in `dir` (which exists and holds no control file): it is
/// empty, or holds only what an interrupted creation leaves behind (the lock file, the snapshot
/// marker directory, `CONTROL.tmp`, and empty `partitions/` and `wal/`), which the creation then
/// finishes. Anything else is not ours: the engine never creates a store over it.
pub(crate) fn is_new_store_dir(vfs: &Arc<dyn Vfs>, dir: &Path) -> io::Result<bool> {
    for name in vfs.read_dir(dir)? {
        let ours = match name.as_str() {
            LOCK_FILE_NAME | SNAPSHOTS_TMP_DIR | CONTROL_TMP_FILE_NAME => true,
            PARTITIONS_DIR | WAL_DIR => {
                let sub = dir.join(&name);
                vfs.is_dir(&sub)? && vfs.read_dir(&sub)?.is_empty()
            }
            _ => false,
        };
        if !ours {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The control file's name inside a store directory (format.md §4).
pub(crate) const CONTROL_FILE_NAME: &str = "CONTROL";
/// The control file being written, renamed over [`CONTROL_FILE_NAME`] (removed at open).
pub(crate) const CONTROL_TMP_FILE_NAME: &str = "CONTROL.tmp";
/// The lock file's name inside a store directory.
pub const LOCK_FILE_NAME: &str = "LOCK";
/// Directory of partition files inside a store, and inside a snapshot.
pub(crate) const PARTITIONS_DIR: &str = "partitions";
/// Directory of redo segments inside a store.
pub(crate) const WAL_DIR: &str = "wal";
/// Directory of the markers of unfinished snapshots inside a store (removed at open).
pub(crate) const SNAPSHOTS_TMP_DIR: &str = "snapshots-tmp";
/// Directory of the deltas inside a snapshot's temporary directory (removed before publish).
pub(crate) const DELTAS_DIR: &str = "deltas";
/// A published snapshot's manifest (format.md §5.2).
pub const MANIFEST_FILE_NAME: &str = "manifest.json";

/// The name of partition `id`'s file: `part-<id>.dat`, `<id>` in decimal.
pub(crate) fn partition_file_name(id: u32) -> String {
    format!("part-{id}.dat")
}

/// The partition whose file `name` is ([`partition_file_name`] read back), if it is one.
pub(crate) fn parse_partition_file_name(name: &str) -> Option<PartitionId> {
    name.strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".dat"))
        .and_then(|n| n.parse::<u32>().ok())
        .map(PartitionId)
}

/// The file of partition `id` in the partitions directory `partitions_dir`.
pub(crate) fn partition_path_in(partitions_dir: &Path, id: PartitionId) -> PathBuf {
    partitions_dir.join(partition_file_name(id.0))
}

/// The file of partition `id` in the store `store_dir`.
pub(crate) fn partition_path(store_dir: &Path, id: PartitionId) -> PathBuf {
    partition_path_in(&store_dir.join(PARTITIONS_DIR), id)
}

/// Partition `id`'s file as a snapshot's manifest names it, relative to the snapshot directory:
/// `partitions/part-<id>.dat`.
pub(crate) fn snapshot_partition_file(id: u32) -> String {
    format!("{PARTITIONS_DIR}/{}", partition_file_name(id))
}

/// The marker of the unfinished snapshot `name` in the store `store_dir`: it names the snapshot's
/// temporary directory, so that the next open can remove it.
pub(crate) fn snapshot_marker_path(store_dir: &Path, name: &str) -> PathBuf {
    store_dir
        .join(SNAPSHOTS_TMP_DIR)
        .join(format!("{name}.pending"))
}

/// Whether the store entry `name` in [`SNAPSHOTS_TMP_DIR`] is a snapshot marker.
pub(crate) fn is_snapshot_marker(name: &str) -> bool {
    name.ends_with(".pending")
}

/// The temporary directory the snapshot `name` is made in, inside its target directory.
pub(crate) fn snapshot_tmp_dir(target_dir: &Path, name: &str) -> PathBuf {
    target_dir.join(format!(".{name}.deltasnap-tmp"))
}

/// Whether `dir` is named like a snapshot's temporary directory (a marker is only trusted to name
/// one of those).
pub(crate) fn is_snapshot_tmp_dir(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(".deltasnap-tmp"))
}

/// The delta file of partition `id` in the snapshot's temporary directory `tmp_dir`.
pub(crate) fn snapshot_delta_path(tmp_dir: &Path, id: PartitionId) -> PathBuf {
    tmp_dir
        .join(DELTAS_DIR)
        .join(format!("part-{}.delta", id.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_file_names_read_back() {
        assert_eq!(partition_file_name(7), "part-7.dat");
        assert_eq!(
            parse_partition_file_name("part-7.dat"),
            Some(PartitionId(7))
        );
        for foreign in [
            "part-.dat",
            "part-x.dat",
            "part-7.dat.tmp",
            "CONTROL",
            "part-7",
        ] {
            assert_eq!(parse_partition_file_name(foreign), None, "{foreign}");
        }
        assert_eq!(snapshot_partition_file(7), "partitions/part-7.dat");
        assert_eq!(
            partition_path(Path::new("s"), PartitionId(7)),
            Path::new("s/partitions/part-7.dat")
        );
    }

    #[test]
    fn snapshot_names() {
        let tmp = snapshot_tmp_dir(Path::new("/t"), "daily");
        assert_eq!(tmp, Path::new("/t/.daily.deltasnap-tmp"));
        assert!(is_snapshot_tmp_dir(&tmp));
        assert!(!is_snapshot_tmp_dir(Path::new("/t/daily")));
        let marker = snapshot_marker_path(Path::new("/s"), "daily");
        assert_eq!(marker, Path::new("/s/snapshots-tmp/daily.pending"));
        assert!(is_snapshot_marker("daily.pending"));
        assert_eq!(
            snapshot_delta_path(&tmp, PartitionId(3)),
            Path::new("/t/.daily.deltasnap-tmp/deltas/part-3.delta")
        );
    }
}
