//! The checkpoint schedule: requests and completions, shared by the checkpointer thread, callers of
//! `checkpoint()`, throttled writers and `close` (through the store's `schedule` lock and its
//! `schedule_changed` condition variable).

use std::time::{Duration, Instant};

use crate::sync::Mutex;
use crate::types::{Epoch, Lsn};

/// What one checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointOutcome {
    /// The checkpoint's epoch; `None` if nothing had changed and it was skipped.
    pub epoch: Option<Epoch>,
    /// The replay-start LSN the control file now names: this checkpoint's, or the last one's
    /// if it was skipped. Redo segments wholly before it may be deleted (C3).
    pub replay_start_lsn: Lsn,
    /// Pages written to partition files (and fsynced, C2); 0 if skipped.
    pub pages_written: u64,
    /// Wall-clock time from the cut to the end of cleanup.
    pub duration: Duration,
}

/// Requests and completions, shared by the checkpointer thread and callers of `checkpoint()`.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    /// Checkpoint runs requested on demand (a run number: "the run after run N").
    pub(crate) requested_run: u64,
    pub(crate) started_run: u64,
    pub(crate) completed_run: u64,
    pub(crate) last_result: Option<std::result::Result<CheckpointOutcome, String>>,
    pub(crate) shutdown: bool,
    /// A snapshot asked for a checkpoint that runs even if nothing changed.
    pub(crate) snapshot_requested: bool,
    pub(crate) last_end: Option<Instant>,
}

/// Guards the single running checkpoint; holds whether `close`'s final checkpoint has run.
pub(crate) type SerialLock = Mutex<bool>;
