//! Job status (DESIGN §5, after AresDB's `SnapshotJobDetail`): every checkpoint and snapshot is a
//! job whose stage, progress and outcome the engine exposes while it runs and after it ended.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use crate::sync::Mutex;
use crate::types::{Epoch, Lsn};

/// How many ended jobs [`Jobs`] remembers.
const ENDED_JOBS_MAX: usize = 32;

/// What a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A checkpoint, on demand, by trigger or as a snapshot's cut (DESIGN §3).
    Checkpoint,
    /// An online snapshot (`Engine::snapshot`), from its request to its published manifest.
    Snapshot,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStage {
    /// Waiting for its turn (a snapshot waiting for its cut checkpoint).
    Waiting,
    /// Taking the cut: publishing the next epoch and draining the old one.
    Cut,
    /// A checkpoint writing pages.
    Writing,
    /// A snapshot copying partition files.
    Copying,
    /// A snapshot merging deltas into its copies.
    Merging,
    /// Making the result durable (control file, snapshot manifest).
    Publishing,
    /// Deleting what the result made unnecessary (redo segments, dropped partitions).
    Cleanup,
    /// Ended with its result durable (a checkpoint's control file, a snapshot's manifest under
    /// its final name).
    Complete,
    /// Ended with an error, or cancelled; [`JobStatus::error`] says why.
    Failed,
}

/// A job's status at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStatus {
    /// Numbers the engine's jobs from 1 in the order they started; unique while the engine is
    /// open, not across opens.
    pub id: u64,
    /// Checkpoint or snapshot.
    pub kind: JobKind,
    /// Where the job is; `Complete` or `Failed` once it ended.
    pub stage: JobStage,
    /// The checkpoint epoch (for a snapshot: its cut epoch, once known).
    pub epoch: Option<Epoch>,
    /// The redo position the job covers (a checkpoint's replay-start LSN).
    pub redo_lsn: Option<Lsn>,
    /// Pages a checkpoint wrote to partition files so far (0 for a snapshot).
    pub pages_written: u64,
    /// Bytes written so far: a checkpoint's pages times the page size, a snapshot's bytes copied
    /// from partition files.
    pub bytes_written: u64,
    /// Bytes the job expects to process in all (a snapshot's copy size), if known.
    pub bytes_total: u64,
    /// Pages a snapshot captured in its deltas so far (DESIGN §4; 0 for a checkpoint).
    pub delta_pages: u64,
    /// Wall-clock time the job started.
    pub started_at: SystemTime,
    /// How long the job ran, once it ended.
    pub duration: Option<Duration>,
    /// Why the job failed, with its context (`Failed` only).
    pub error: Option<String>,
}

#[derive(Debug)]
struct Entry {
    status: JobStatus,
    started: Instant,
}

/// The registry of running and recently ended jobs.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    inner: Mutex<(u64, VecDeque<Entry>)>,
}

impl Jobs {
    pub(crate) fn start(&self, kind: JobKind, stage: JobStage) -> u64 {
        let mut inner = self.inner.lock();
        inner.0 += 1;
        let id = inner.0;
        inner.1.push_back(Entry {
            status: JobStatus {
                id,
                kind,
                stage,
                epoch: None,
                redo_lsn: None,
                pages_written: 0,
                bytes_written: 0,
                bytes_total: 0,
                delta_pages: 0,
                started_at: SystemTime::now(),
                duration: None,
                error: None,
            },
            started: Instant::now(),
        });
        let ended = inner
            .1
            .iter()
            .filter(|e| e.status.duration.is_some())
            .count();
        if ended > ENDED_JOBS_MAX {
            if let Some(pos) = inner.1.iter().position(|e| e.status.duration.is_some()) {
                inner.1.remove(pos);
            }
        }
        id
    }

    pub(crate) fn update(&self, id: u64, change: impl FnOnce(&mut JobStatus)) {
        let mut inner = self.inner.lock();
        if let Some(entry) = inner.1.iter_mut().find(|e| e.status.id == id) {
            change(&mut entry.status);
        }
    }

    /// Ends the job: `Complete` on `Ok`, `Failed` with the error otherwise.
    pub(crate) fn finish(&self, id: u64, error: Option<String>) {
        let mut inner = self.inner.lock();
        if let Some(entry) = inner.1.iter_mut().find(|e| e.status.id == id) {
            entry.status.duration = Some(entry.started.elapsed());
            entry.status.stage = if error.is_some() {
                JobStage::Failed
            } else {
                JobStage::Complete
            };
            entry.status.error = error;
        }
    }

    pub(crate) fn list(&self) -> Vec<JobStatus> {
        self.inner
            .lock()
            .1
            .iter()
            .map(|e| e.status.clone())
            .collect()
    }
}
