//! A running snapshot as its caller sees it: [`SnapshotHandle`] and [`SnapshotProgress`].

use crate::error::{Error, Result};
use crate::jobs::JobStage;
use crate::snapshot::manifest::Manifest;
use crate::snapshot::state::Shared;
use crate::sync::atomic::Ordering;
use crate::sync::{thread, Arc, Mutex};
use crate::types::Epoch;

/// A running snapshot's progress.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotProgress {
    pub stage: JobStage,
    /// The cut epoch, once the cut is taken.
    pub cut_epoch: Option<Epoch>,
    pub bytes_copied: u64,
    pub bytes_total: u64,
    pub delta_pages: u64,
    /// Every partition is copied (the merge may still wait for the cut checkpoint to end).
    pub copy_done: bool,
    /// The job in `Engine::jobs()`.
    pub job_id: u64,
    /// The most bytes of delta the merge held in memory at once so far (for the checkers of the
    /// merge's bound, [`MERGE_BUFFER_BYTES_MAX`](super::MERGE_BUFFER_BYTES_MAX)).
    #[doc(hidden)]
    pub merge_buffer_bytes_peak: u64,
}

/// A running snapshot. Dropping the handle does not stop the snapshot; [`SnapshotHandle::cancel`]
/// does.
pub struct SnapshotHandle {
    shared: Arc<Shared>,
    job: u64,
    thread: Mutex<Option<thread::JoinHandle<Result<Manifest>>>>,
}

impl std::fmt::Debug for SnapshotHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotHandle")
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

impl SnapshotHandle {
    /// The handle of the snapshot whose task runs on `thread`, listed as `job`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        job: u64,
        thread: thread::JoinHandle<Result<Manifest>>,
    ) -> Self {
        SnapshotHandle {
            shared,
            job,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Where the snapshot is.
    pub fn progress(&self) -> SnapshotProgress {
        let cut_epoch = self.shared.cut_epoch.load(Ordering::Acquire);
        SnapshotProgress {
            stage: *self.shared.stage.lock(),
            cut_epoch: (cut_epoch != 0).then_some(cut_epoch),
            bytes_copied: self.shared.bytes_copied.load(Ordering::Relaxed),
            bytes_total: self.shared.bytes_total.load(Ordering::Relaxed),
            delta_pages: self.shared.delta_pages.load(Ordering::Relaxed),
            copy_done: self.shared.copy_done.load(Ordering::Acquire),
            job_id: self.job,
            merge_buffer_bytes_peak: self.shared.merge_buffer_bytes_peak.load(Ordering::Relaxed),
        }
    }

    /// Stops the snapshot: closes every hook, stops the copier (also in a rate limiter's wait),
    /// removes the temporary directory. `wait` then returns `Error::Cancelled` (unless the
    /// snapshot had already published).
    pub fn cancel(&self) {
        self.shared.cancel();
    }

    /// Whether the snapshot has ended (published, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// Waits for the snapshot to end; returns its manifest once it is published.
    pub fn wait(self) -> Result<Manifest> {
        let handle = self.thread.lock().take().expect("wait consumes the handle");
        handle
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidSnapshot("snapshot task panicked".into())))
    }
}
