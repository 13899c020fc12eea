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
    /// Where the snapshot is: `Waiting` for its cut, `Copying`, `Merging`, `Publishing`, then
    /// `Complete` or `Failed` (cancelled included).
    pub stage: JobStage,
    /// The cut epoch, once the cut is taken.
    pub cut_epoch: Option<Epoch>,
    /// Bytes of partition files copied so far; at most `bytes_total`.
    pub bytes_copied: u64,
    /// Bytes the copy reads in all: the whole pages of the partition files at the cut (0 until
    /// the cut is taken).
    pub bytes_total: u64,
    /// Pages the write hook captured in delta files so far (DESIGN §4).
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

    /// Where the snapshot is; cheap (a few atomic loads), so a progress bar may poll it.
    ///
    /// ```
    /// use std::{thread, time::Duration};
    /// use deltasnap::{Config, Engine, JobStage, PartitionId, SnapshotOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path().join("store"), Config::default())?;
    /// engine.create_partition(PartitionId(0))?;
    /// let page = engine.allocate_page(PartitionId(0))?;
    /// engine.write(page, 0, b"copied")?;
    /// let snapshot = engine.snapshot(SnapshotOptions::new(dir.path(), "polled"))?;
    /// while !snapshot.is_finished() {
    ///     let progress = snapshot.progress();
    ///     assert!(progress.bytes_copied <= progress.bytes_total);
    ///     thread::sleep(Duration::from_millis(1));
    /// }
    /// let progress = snapshot.progress();
    /// assert_eq!(progress.stage, JobStage::Complete);
    /// assert!(progress.copy_done);
    /// assert_eq!(progress.bytes_copied, progress.bytes_total);
    /// assert_eq!(Some(snapshot.wait()?.cut_epoch), progress.cut_epoch);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// snapshot had already published). Returns at once; `wait` returns once the cleanup is done.
    ///
    /// ```
    /// use deltasnap::{Config, Engine, Error, PartitionId, SnapshotOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path().join("store"), Config::default())?;
    /// engine.create_partition(PartitionId(0))?;
    /// for _ in 0..16 {
    ///     let page = engine.allocate_page(PartitionId(0))?;
    ///     engine.write(page, 0, b"slow to copy")?;
    /// }
    /// // 16 pages at 4 KiB/s: the copy would take seconds.
    /// let mut options = SnapshotOptions::new(dir.path(), "cancelled");
    /// options.rate_limit_bytes_per_sec = Some(4096);
    /// let snapshot = engine.snapshot(options)?;
    /// snapshot.cancel();
    /// assert!(matches!(snapshot.wait(), Err(Error::Cancelled)));
    /// assert!(!dir.path().join("cancelled").exists());
    /// // The slot is free again.
    /// engine.snapshot(SnapshotOptions::new(dir.path(), "next"))?.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) {
        self.shared.cancel();
    }

    /// Whether the snapshot has ended (published, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// Waits for the snapshot to end; returns its manifest once it is published (durably:
    /// files, manifest, directory and its parent fsynced, L4). Errors: `Error::Cancelled` after
    /// [`cancel`](SnapshotHandle::cancel) or `Engine::close`; the cause of an I/O failure in the
    /// copier, hook or merge (the snapshot fails, never the checkpoint or the writers);
    /// `Error::Poisoned` if a checkpoint failed while the snapshot waited on it (L2: the wait
    /// always ends).
    ///
    /// ```
    /// use deltasnap::{Config, Engine, PartitionId, SnapshotOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path().join("store"), Config::default())?;
    /// engine.create_partition(PartitionId(2))?;
    /// let page = engine.allocate_page(PartitionId(2))?;
    /// engine.write(page, 0, b"at the cut")?;
    /// let manifest = engine.snapshot(SnapshotOptions::new(dir.path(), "waited"))?.wait()?;
    /// assert_eq!(manifest.name, "waited");
    /// assert_eq!(manifest.partitions[0].page_count, 1);
    /// assert!(dir.path().join("waited/manifest.json").exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(self) -> Result<Manifest> {
        let handle = self.thread.lock().take().expect("wait consumes the handle");
        handle
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidSnapshot("snapshot task panicked".into())))
    }
}
