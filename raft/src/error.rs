//! The crate's error: one enum, each variant naming what went wrong and where, so that a caller
//! (and a test) can match on a refused snapshot chunk rather than parse a message.

use std::path::PathBuf;

use crate::NodeId;

/// What can go wrong in the replicated store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused or failed.
    #[error("deltasnap: {0}")]
    Engine(#[from] deltasnap::Error),
    /// A file operation of this crate (raft log, vote, `CURRENT`, snapshot transfer) failed.
    #[error("{step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bytes read back from disk do not pass their check (crc, length, format).
    #[error("{} is corrupted: {reason}", path.display())]
    Corrupted { path: PathBuf, reason: String },
    /// A streamed snapshot chunk whose pages do not match the manifest's page crcs (or whose
    /// own page footer does not verify): the transfer is refused, the follower keeps its state.
    #[error("snapshot {snapshot_id}: page {page} of {file} arrived with crc {actual:#010x}, the manifest says {expected:#010x}")]
    ChunkCrcMismatch {
        snapshot_id: String,
        file: String,
        page: u32,
        expected: u32,
        actual: u32,
    },
    /// A streamed snapshot ended before every file was complete.
    #[error("snapshot {snapshot_id}: transfer truncated, {file} has {received_bytes} of {expected_bytes} bytes")]
    SnapshotTruncated {
        snapshot_id: String,
        file: String,
        expected_bytes: u64,
        received_bytes: u64,
    },
    /// A chunk that does not fit the transfer: unknown file, out of order, not whole pages, past
    /// the end of its file.
    #[error("snapshot {snapshot_id}: chunk refused: {reason}")]
    ChunkRefused { snapshot_id: String, reason: String },
    /// The snapshot's data and its meta disagree (the meta a leader sent is not the meta at the
    /// snapshot's cut, RA1).
    #[error("snapshot {snapshot_id}: {reason}")]
    SnapshotMetaMismatch { snapshot_id: String, reason: String },
    /// The log storage was asked to purge past the last durable snapshot (RA3).
    #[error(
        "purge up to index {requested} refused: the last durable snapshot ends at {durable:?}"
    )]
    PurgePastDurableSnapshot {
        requested: u64,
        durable: Option<u64>,
    },
    /// A node the in-process network does not know or has disconnected.
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
    /// openraft refused or stopped.
    #[error("raft: {0}")]
    Raft(String),
    /// An argument out of its documented range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A blocking task of ours panicked or was cancelled (a bug).
    #[error("background task failed: {0}")]
    Task(String),
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(step: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            step,
            path: path.into(),
            source,
        }
    }
}

/// Adds the step and the path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, step: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, step: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::io(step, path, source))
    }
}

/// Runs a blocking closure on tokio's blocking pool: engine and file calls are synchronous, and
/// the runtime's worker threads must not wait on an fsync.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

/// Creates `dir` and its missing parents, fsyncing the parent of each directory created, from
/// the first that existed down (a directory entry is durable only once its parent is fsynced;
/// DESIGN L4).
pub(crate) fn create_dir_all_durable(
    vfs: &std::sync::Arc<dyn deltasnap::vfs::Vfs>,
    dir: &std::path::Path,
) -> Result<()> {
    let mut missing: Vec<&std::path::Path> = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.as_os_str().is_empty() || vfs.exists(path).ctx("stat", path)? {
            break;
        }
        missing.push(path);
        cursor = path.parent();
    }
    for path in missing.into_iter().rev() {
        vfs.create_dir_all(path).ctx("create directory", path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            vfs.sync_dir(parent).ctx("fsync directory", parent)?;
        }
    }
    Ok(())
}
