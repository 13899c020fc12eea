//! The crate's one error type. Every variant carries enough context to act on: which file, which
//! page, which step. Bytes read from disk never panic the process; they become
//! [`Error::Corrupted`] or [`Error::ChecksumMismatch`] (STYLE rule 4).

use std::io;
use std::path::PathBuf;

use crate::types::{PageId, PartitionId};

/// A `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in deltasnap.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed. `op` names the step (e.g. "fsync partition file").
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The step that failed, e.g. "fsync partition file".
        op: &'static str,
        /// The file or directory it concerned.
        path: PathBuf,
        /// The operating system's (or the `Vfs`'s) error.
        #[source]
        source: io::Error,
    },

    /// Bytes on disk are not what the format says they must be.
    #[error("corrupted {}{}: {reason}", file.display(), page.map(|p| format!(" page {p}")).unwrap_or_default())]
    Corrupted {
        /// The file whose bytes are wrong.
        file: PathBuf,
        /// The page (index in that file) if the damage is in one.
        page: Option<u64>,
        /// What is wrong, in the format's words.
        reason: String,
    },

    /// A checksum over bytes read from disk did not match.
    #[error("checksum mismatch in {}{}: expected {expected:#010x}, found {actual:#010x}", file.display(), page.map(|p| format!(" page {p}")).unwrap_or_default())]
    ChecksumMismatch {
        /// The file the bytes were read from.
        file: PathBuf,
        /// The page (index in that file), if the checksum covers one.
        page: Option<u64>,
        /// The checksum stored with the bytes.
        expected: u32,
        /// The checksum of the bytes as read.
        actual: u32,
    },

    /// The caller asked for something that does not exist or does not fit.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No partition with this id.
    #[error("no partition {0}")]
    NoSuchPartition(PartitionId),

    /// The partition exists already.
    #[error("partition {0} already exists")]
    PartitionExists(PartitionId),

    /// The page has not been allocated.
    #[error("page {page} is out of range: partition has {page_count} pages")]
    PageOutOfRange {
        /// The page asked for.
        page: PageId,
        /// Pages its partition has now.
        page_count: u32,
    },

    /// `offset + len` runs past the page's payload.
    #[error("write of {len} bytes at offset {offset} runs past the page payload of {payload_size} bytes")]
    OutOfPage {
        /// Where the write starts in the payload.
        offset: usize,
        /// Bytes it writes.
        len: usize,
        /// Bytes of payload a page has (`Engine::payload_size`).
        payload_size: usize,
    },

    /// The store was created with another page size than the one configured.
    #[error("store at {} has page size {on_disk}, configuration asks for {configured}", dir.display())]
    PageSizeMismatch {
        /// The store.
        dir: PathBuf,
        /// The page size the store was created with.
        on_disk: u32,
        /// The page size `Config` asked for.
        configured: u32,
    },

    /// The directory does not hold a store and the configuration does not allow creating one, or
    /// it holds files but no control file (we never start empty over data).
    #[error("{} is not a deltasnap store: {reason}", dir.display())]
    NotAStore {
        /// The directory.
        dir: PathBuf,
        /// Why it is not a store.
        reason: String,
    },

    /// An earlier checkpoint failed to write or fsync a partition file. The redo log still holds
    /// every write, but the page cache can no longer be trusted (a failed fsync may have dropped
    /// dirty pages), so the engine refuses further writes: close and reopen to recover from the log.
    #[error("engine is read-only after a failed checkpoint: {0}")]
    Poisoned(String),

    /// An earlier I/O error on the redo log's append or fsync path failed the log. A failed fsync
    /// may have dropped dirty pages, so the log never retries: reopen to recover from what reached
    /// the disk.
    #[error("redo log failed after an earlier I/O error, reopen to recover: {0}")]
    WalFailed(String),

    /// The engine was closed.
    #[error("engine is closed")]
    Closed,

    /// A snapshot is already running on this store.
    #[error("a snapshot is already running on this store ({0})")]
    SnapshotRunning(String),

    /// A snapshot does not verify against its manifest.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),

    /// The snapshot was cancelled.
    #[error("snapshot cancelled")]
    Cancelled,

    /// Another engine (in this process or another) holds the store open: one engine per store.
    /// `holder_pid` is the pid the holder wrote into the lock file, where it could be read.
    #[error("store at {} is in use by another engine{}", dir.display(), holder_pid.map(|p| format!(" (process {p})")).unwrap_or_default())]
    StoreLocked {
        /// The store.
        dir: PathBuf,
        /// The holder's process id, as its lock file names it.
        holder_pid: Option<u32>,
    },
}

impl Error {
    /// Wraps an `io::Error` with the step and the path it concerned.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The raw OS error code if this is an I/O error (e.g. `libc::ENOSPC`).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Attaches the step and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::io(op, path, source))
    }
}
