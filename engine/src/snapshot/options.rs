//! What to snapshot and how: [`SnapshotOptions`] and the ranges of its fields.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::snapshot::manifest::validate_snapshot_name;
use crate::snapshot::protocol::DeltaPolicy;
#[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
use crate::sync::Arc;
#[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
use crate::types::PartitionId;

/// Called by the copier before it announces each chunk, with the partition and the chunk's first
/// page. Tests use it to hold the copier at a chosen point and force a race order (S5).
#[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
pub type CopyGate = Arc<dyn Fn(PartitionId, u32) + Send + Sync>;

/// The largest [`SnapshotOptions::chunk_bytes`]: 1 GiB.
pub const CHUNK_BYTES_MAX: u64 = 1 << 30;
/// The smallest [`SnapshotOptions::rate_limit_bytes_per_sec`]: 4 KiB/s. A slower copy of even a
/// small store would take days while holding a snapshot slot and the delta's disk space.
pub const RATE_LIMIT_BYTES_PER_SEC_MIN: u64 = 4096;

/// What to snapshot and how. `Engine::snapshot` checks every field against the range given here
/// before it creates anything, and refuses a value out of range with `Error::InvalidArgument`
/// naming the field.
#[derive(Clone)]
pub struct SnapshotOptions {
    /// The directory the snapshot is published in, as `<target_dir>/<name>`; created (durably,
    /// with its missing parents) if it does not exist. Not empty. A relative path is resolved
    /// against the process's working directory when the snapshot starts, and the snapshot works
    /// with that absolute path from then on (so that the store's marker of an unfinished snapshot
    /// names its temporary directory whatever the working directory of a later open).
    pub target_dir: PathBuf,
    /// The snapshot's name: 1 to 128 of `[A-Za-z0-9._-]`, not starting with `.`.
    pub name: String,
    /// Which pages the write hook captures while the copy runs (DESIGN §4): `Full` (Ignite's
    /// rule, the default) or `CursorAware` (smaller deltas). Both give the same snapshot (S1).
    pub delta_policy: DeltaPolicy,
    /// Bytes per second the copier may copy; `None`: as fast as the disk goes. `Some(r)` needs
    /// `r >= RATE_LIMIT_BYTES_PER_SEC_MIN` (`Some(0)` is refused: use `None` for no limit).
    pub rate_limit_bytes_per_sec: Option<u64>,
    /// Bytes the copier announces and copies at a time: at least one page of the store, at most
    /// [`CHUNK_BYTES_MAX`]; rounded down to whole pages.
    pub chunk_bytes: u64,
    /// Test hook, see [`CopyGate`].
    #[doc(hidden)]
    #[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
    pub copy_gate: Option<CopyGate>,
}

impl SnapshotOptions {
    /// Checks every field against its documented range for a store of `page_size`-byte pages.
    /// Returns the chunk in pages.
    pub(crate) fn validate(&self, page_size: u32) -> Result<u32> {
        validate_snapshot_name(&self.name)?;
        if self.target_dir.as_os_str().is_empty() {
            return Err(Error::InvalidArgument(
                "SnapshotOptions::target_dir is empty; name the directory to publish in".into(),
            ));
        }
        let page_size = u64::from(page_size);
        if !(page_size..=CHUNK_BYTES_MAX).contains(&self.chunk_bytes) {
            return Err(Error::InvalidArgument(format!(
                "SnapshotOptions::chunk_bytes = {} is out of range {page_size}..={CHUNK_BYTES_MAX} (one page of this store to 1 GiB)",
                self.chunk_bytes
            )));
        }
        if let Some(rate) = self.rate_limit_bytes_per_sec {
            if rate < RATE_LIMIT_BYTES_PER_SEC_MIN {
                return Err(Error::InvalidArgument(format!(
                    "SnapshotOptions::rate_limit_bytes_per_sec = Some({rate}) is out of range {RATE_LIMIT_BYTES_PER_SEC_MIN}..={} (None: no limit)",
                    u64::MAX
                )));
            }
        }
        // At most 2^30 / 512 = 2^21 pages: no wrap.
        u32::try_from(self.chunk_bytes / page_size).map_err(|_| {
            Error::InvalidArgument(format!(
                "SnapshotOptions::chunk_bytes = {} is too many pages",
                self.chunk_bytes
            ))
        })
    }

    /// Options for a snapshot published as `<target_dir>/<name>`, with the defaults:
    /// [`DeltaPolicy::Full`], no rate limit, 1 MiB chunks. Checks nothing: `Engine::snapshot`
    /// checks every field when it starts.
    ///
    /// ```
    /// use deltasnap::{Config, DeltaPolicy, Engine, Error, SnapshotOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path().join("store"), Config::default())?;
    /// let mut options = SnapshotOptions::new(dir.path().join("snapshots"), "nightly-1");
    /// options.delta_policy = DeltaPolicy::CursorAware;
    /// options.rate_limit_bytes_per_sec = Some(64 << 20);
    /// options.chunk_bytes = 256 << 10;
    /// engine.snapshot(options)?.wait()?;
    ///
    /// let bad_name = SnapshotOptions::new(dir.path(), "../escape");
    /// assert!(matches!(engine.snapshot(bad_name), Err(Error::InvalidArgument(_))));
    /// let mut no_rate = SnapshotOptions::new(dir.path(), "slow");
    /// no_rate.rate_limit_bytes_per_sec = Some(0);
    /// assert!(matches!(engine.snapshot(no_rate), Err(Error::InvalidArgument(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(target_dir: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        SnapshotOptions {
            target_dir: target_dir.into(),
            name: name.into(),
            delta_policy: DeltaPolicy::Full,
            rate_limit_bytes_per_sec: None,
            chunk_bytes: 1 << 20,
            #[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
            copy_gate: None,
        }
    }
}

impl std::fmt::Debug for SnapshotOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotOptions")
            .field("target_dir", &self.target_dir)
            .field("name", &self.name)
            .field("delta_policy", &self.delta_policy)
            .field("rate_limit_bytes_per_sec", &self.rate_limit_bytes_per_sec)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}
