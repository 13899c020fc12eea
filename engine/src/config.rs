//! The engine's configuration and its validation, and what the engine reports: the recovery it
//! ran at open ([`RecoveryReport`]) and its counters ([`EngineStats`]).

use std::path::PathBuf;

use crate::bugs::{self, Bug};
use crate::error::{Error, Result};
use crate::format;
use crate::types::{Epoch, Lsn};
use crate::wal::TailCut;

/// Largest metadata key, in bytes (keys are `1 ..= 1024` bytes). A longer or empty key is
/// refused with `Error::InvalidArgument` by `Engine::metadata_put` and `metadata_delete`, and a
/// manifest holding one does not parse.
pub const METADATA_KEY_BYTES_MAX: usize = 1024;
/// Largest metadata value, in bytes (1 MiB; an empty value is allowed). A longer value is refused
/// with `Error::InvalidArgument` by `Engine::metadata_put`, and a manifest holding one does not
/// parse.
pub const METADATA_VALUE_BYTES_MAX: usize = 1 << 20;

/// Engine configuration. `Config::default()` suits a store of a few GiB.
///
/// Every field has a documented range, and [`Config::validate`] (which `Engine::open` calls
/// before touching the store) refuses a value outside it with `Error::InvalidArgument` naming
/// the field, the value and the range. Out of range, a value would not fail loudly but make the
/// engine misbehave: a zero redo threshold or interval made the checkpointer spin, a budget of a
/// few pages throttles every writer.
#[derive(Debug, Clone)]
pub struct Config {
    /// Page size for a new store: a power of two in `512 ..= 65536`. An existing store must
    /// match.
    pub page_size: u32,
    /// Create the store if the directory holds none (any value).
    pub create_if_missing: bool,
    /// Bytes of page images kept in memory; clean images beyond it are evicted. Range:
    /// [`Config::MEMORY_BUDGET_PAGES_MIN`] pages ..= [`Config::MEMORY_BUDGET_BYTES_MAX`].
    pub memory_budget_bytes: u64,
    /// Start a checkpoint when dirty images pass this share of the budget. Range: `1 ..=
    /// dirty_throttle_percent`.
    pub dirty_checkpoint_percent: u8,
    /// Throttle writers when dirty images pass this share of the budget. Range:
    /// `dirty_checkpoint_percent ..= 100`.
    pub dirty_throttle_percent: u8,
    /// Start a checkpoint at least this often (`None`: only on the other triggers). Range:
    /// `Some(1 ..=` [`Config::CHECKPOINT_INTERVAL_MS_MAX`]`)` (a day).
    pub checkpoint_interval_ms: Option<u64>,
    /// Start a checkpoint when this many redo bytes were written since the last one. Range:
    /// [`Config::CHECKPOINT_REDO_PAGES_MIN`] pages ..= [`Config::CHECKPOINT_REDO_BYTES_MAX`].
    pub checkpoint_redo_bytes: u64,
    /// Size at which the redo log rolls to a new segment. Range:
    /// [`Config::WAL_SEGMENT_PAGES_MIN`] pages ..= [`Config::WAL_SEGMENT_BYTES_MAX`].
    pub wal_segment_bytes: u64,
    /// Run the background threads: the checkpointer, and the redo log's write-behind, which
    /// writes the log's full buffers so that writers do no file I/O (tests that drive
    /// checkpoints by hand turn them off; `checkpoint()` then runs on the caller's thread, and a
    /// writer that fills the log's buffer writes it). Any value.
    pub background_checkpointer: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            page_size: format::PAGE_SIZE_DEFAULT,
            create_if_missing: true,
            memory_budget_bytes: 256 << 20,
            dirty_checkpoint_percent: 50,
            dirty_throttle_percent: 75,
            checkpoint_interval_ms: Some(5_000),
            checkpoint_redo_bytes: 256 << 20,
            wal_segment_bytes: 64 << 20,
            background_checkpointer: true,
        }
    }
}

impl Config {
    /// Smallest `memory_budget_bytes`, in pages: below it the dirty thresholds leave writers a
    /// page or two before they are throttled.
    pub const MEMORY_BUDGET_PAGES_MIN: u64 = 16;
    /// Largest `memory_budget_bytes` (16 TiB).
    pub const MEMORY_BUDGET_BYTES_MAX: u64 = 1 << 44;
    /// Largest `checkpoint_interval_ms` (a day).
    pub const CHECKPOINT_INTERVAL_MS_MAX: u64 = 24 * 60 * 60 * 1000;
    /// Smallest `checkpoint_redo_bytes`, in pages: a few full page images, so that the redo
    /// written while a checkpoint runs cannot keep the next one due.
    pub const CHECKPOINT_REDO_PAGES_MIN: u64 = 16;
    /// Largest `checkpoint_redo_bytes` (1 TiB: the redo a recovery may have to replay).
    pub const CHECKPOINT_REDO_BYTES_MAX: u64 = 1 << 40;
    /// Smallest `wal_segment_bytes`, in pages: a segment holds a few full page images.
    pub const WAL_SEGMENT_PAGES_MIN: u64 = 4;
    /// Largest `wal_segment_bytes` (1 GiB).
    pub const WAL_SEGMENT_BYTES_MAX: u64 = 1 << 30;

    /// Checks every field against its documented range (`Engine::open` calls it first). The
    /// error names the field, its value and the range.
    ///
    /// ```
    /// use deltasnap::{Config, Error};
    ///
    /// let config = Config { checkpoint_interval_ms: Some(0), ..Config::default() };
    /// let error = config.validate().unwrap_err();
    /// assert!(matches!(error, Error::InvalidArgument(_)));
    /// assert!(error.to_string().contains("checkpoint_interval_ms"), "{error}");
    /// assert!(Config::default().validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if format::validate_page_size(self.page_size).is_err() {
            return Err(Error::InvalidArgument(format!(
                "page_size ({}) must be a power of two in {}..={}",
                self.page_size,
                format::PAGE_SIZE_MIN,
                format::PAGE_SIZE_MAX
            )));
        }
        if !(1..=self.dirty_throttle_percent).contains(&self.dirty_checkpoint_percent)
            || !(self.dirty_checkpoint_percent..=100).contains(&self.dirty_throttle_percent)
        {
            return Err(Error::InvalidArgument(format!(
                "dirty_checkpoint_percent ({}) must be in 1..=dirty_throttle_percent and \
                 dirty_throttle_percent ({}) in dirty_checkpoint_percent..=100",
                self.dirty_checkpoint_percent, self.dirty_throttle_percent
            )));
        }
        let page_size = self.page_size as u64;
        if bugs::active(Bug::ConfigUnchecked) {
            // The checks before issue 11: only the segment's lower bound.
            if self.wal_segment_bytes < Self::WAL_SEGMENT_PAGES_MIN * page_size {
                return Err(out_of_range(
                    "wal_segment_bytes",
                    self.wal_segment_bytes,
                    Self::WAL_SEGMENT_PAGES_MIN * page_size,
                    Self::WAL_SEGMENT_BYTES_MAX,
                ));
            }
            return Ok(());
        }
        let ranges = [
            (
                "memory_budget_bytes",
                self.memory_budget_bytes,
                Self::MEMORY_BUDGET_PAGES_MIN * page_size,
                Self::MEMORY_BUDGET_BYTES_MAX,
            ),
            (
                "checkpoint_interval_ms",
                // `None` is in range; `Some(0)` is not.
                self.checkpoint_interval_ms.unwrap_or(1),
                1,
                Self::CHECKPOINT_INTERVAL_MS_MAX,
            ),
            (
                "checkpoint_redo_bytes",
                self.checkpoint_redo_bytes,
                Self::CHECKPOINT_REDO_PAGES_MIN * page_size,
                Self::CHECKPOINT_REDO_BYTES_MAX,
            ),
            (
                "wal_segment_bytes",
                self.wal_segment_bytes,
                Self::WAL_SEGMENT_PAGES_MIN * page_size,
                Self::WAL_SEGMENT_BYTES_MAX,
            ),
        ];
        for (field, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(out_of_range(field, value, min, max));
            }
        }
        Ok(())
    }
}

fn out_of_range(field: &str, value: u64, min: u64, max: u64) -> Error {
    Error::InvalidArgument(format!(
        "{field} ({value}) is out of its range {min}..={max}"
    ))
}

/// What `Engine::open` found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Whether `open` created a new store.
    pub created: bool,
    /// The checkpoint recovery started from.
    pub checkpoint_epoch: Epoch,
    /// Where replay began: the replay-start LSN the control file names for that checkpoint
    /// (every redo record before it is already in the partition files; R1).
    pub replay_start_lsn: Lsn,
    /// Records replayed from the redo log.
    pub records_replayed: u64,
    /// The end of the redo log after recovery.
    pub end_lsn: Lsn,
    /// A torn or corrupt redo tail that was cut off (also logged as a warning).
    pub wal_tail_cut: Option<TailCut>,
    /// Files of partitions that no durable state references, removed.
    pub stale_files_removed: Vec<PathBuf>,
    /// Temporary directories of snapshots that never published, removed.
    pub unfinished_snapshots_removed: Vec<PathBuf>,
    /// Temporary directories of snapshots that never published that could not be removed (their
    /// target unreachable, say; logged as warnings). They do not keep the store from opening;
    /// their markers stay, so the next open tries again.
    pub unfinished_snapshot_cleanups_failed: Vec<PathBuf>,
}

/// Counters of what the engine did since it was opened (also exported through `metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    /// Successful page writes (`Engine::write`), each counted once however often it retried.
    pub writes: u64,
    /// Writes that found the cut had passed them and retried in the next epoch.
    pub write_retries: u64,
    /// Checkpoint images kept for a running checkpoint (DESIGN §3 step 3).
    pub checkpoint_images_kept: u64,
    /// Clean page images evicted to stay within the memory budget.
    pub pages_evicted: u64,
    /// Times a writer waited because dirty pages passed the hard limit.
    pub writer_throttles: u64,
}
