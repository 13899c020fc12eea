//! The state a snapshot's write hook (on the checkpointer thread), its task thread and its
//! handle share.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::jobs::JobStage;
use crate::snapshot::delta::DeltaFile;
use crate::snapshot::hook::HookCell;
use crate::snapshot::protocol::DeltaPolicy;
use crate::snapshot::trace;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Arc, Condvar, Mutex, RwLock};
use crate::types::{Epoch, Lsn, PartitionId};
use crate::vfs::{Vfs, VfsFile};

/// One partition's hook: the protocol state and the I/O it steers, behind the hook lock.
pub(crate) type PartitionHook = HookCell<PartitionIo>;

/// What a partition's hook lock guards besides the protocol state.
pub(crate) struct PartitionIo {
    pub(crate) delta: DeltaFile,
    pub(crate) source: Arc<dyn VfsFile>,
    pub(crate) source_path: PathBuf,
}

/// What the cut fixed.
#[derive(Clone)]
pub(crate) struct CutInfo {
    pub(crate) epoch: Epoch,
    pub(crate) lsn: Lsn,
    pub(crate) metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct TaskState {
    /// The task has ended (published, failed or cancelled): a checkpoint that copied its listener
    /// list earlier may still call the hook; it must find nothing to do.
    pub(crate) ended: bool,
    pub(crate) cut: Option<CutInfo>,
    pub(crate) checkpoint_ended: bool,
    pub(crate) failure: Option<String>,
    pub(crate) cancelled: bool,
}

/// State shared by the hook (checkpointer thread), the task thread and the handle.
pub(crate) struct Shared {
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) page_size: u32,
    pub(crate) policy: DeltaPolicy,
    pub(crate) tmp_dir: PathBuf,
    pub(crate) hooks: RwLock<BTreeMap<PartitionId, Arc<PartitionHook>>>,
    pub(crate) state: Mutex<TaskState>,
    pub(crate) state_changed: Condvar,
    pub(crate) stage: Mutex<JobStage>,
    pub(crate) bytes_copied: AtomicU64,
    pub(crate) bytes_total: AtomicU64,
    pub(crate) delta_pages: AtomicU64,
    pub(crate) cut_epoch: AtomicU64,
    pub(crate) copy_done: AtomicBool,
    pub(crate) merge_buffer_bytes_peak: AtomicU64,
    pub(crate) cancel_requested: AtomicBool,
    pub(crate) finished: AtomicBool,
}

impl Shared {
    /// The state of a snapshot made in `tmp_dir`, waiting for its cut.
    pub(crate) fn new(
        vfs: Arc<dyn Vfs>,
        page_size: u32,
        policy: DeltaPolicy,
        tmp_dir: PathBuf,
    ) -> Self {
        Shared {
            vfs,
            page_size,
            policy,
            tmp_dir,
            hooks: RwLock::new(BTreeMap::new()),
            state: Mutex::new(TaskState::default()),
            state_changed: Condvar::new(),
            stage: Mutex::new(JobStage::Waiting),
            bytes_copied: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            delta_pages: AtomicU64::new(0),
            cut_epoch: AtomicU64::new(0),
            copy_done: AtomicBool::new(false),
            merge_buffer_bytes_peak: AtomicU64::new(0),
            cancel_requested: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        }
    }

    pub(crate) fn fail(&self, reason: String) {
        let mut state = self.state.lock();
        if state.failure.is_none() {
            tracing::warn!(%reason, "snapshot failed");
            state.failure = Some(reason);
        }
        drop(state);
        self.close_all_hooks();
        self.state_changed.notify_all();
    }

    /// Closes every hook (cancel): from now on no capture happens.
    /// Stops the snapshot (`SnapshotHandle::cancel`, and `Engine::close`).
    pub(crate) fn cancel(&self) {
        self.cancel_requested.store(true, Ordering::Release);
        // Through the state lock: a task thread that checked the flag under it is now waiting,
        // so the notify reaches it (no lost wakeup).
        drop(self.state.lock());
        self.state_changed.notify_all();
        self.close_all_hooks();
    }

    pub(crate) fn close_all_hooks(&self) {
        for hook in self.hooks.read().values() {
            let _already_closed =
                hook.update(|state| state.protocol.cancel().inspect(|()| trace::cancelled()));
        }
    }

    /// Writes out the delta appends the hook buffered during checkpoint `epoch` (delta.rs), in
    /// the checkpointer: a write error fails the snapshot, as an unbuffered append's would have.
    pub(crate) fn flush_deltas(&self, epoch: Epoch) {
        let hooks: Vec<_> = self
            .hooks
            .read()
            .iter()
            .map(|(id, h)| (*id, Arc::clone(h)))
            .collect();
        for (id, hook) in hooks {
            let flushed = hook.update(|state| {
                if state.protocol.closed().is_some() {
                    return Ok(()); // merged (its delta was read), failed or cancelled
                }
                state.io.delta.flush().inspect_err(|_| {
                    let _ = state.protocol.cancel().inspect(|()| trace::cancelled());
                })
            });
            if let Err(error) = flushed {
                self.fail(format!(
                    "capturing pages of partition {id} into the delta failed at the end of checkpoint {epoch}: {error}"
                ));
                return;
            }
        }
    }

    /// Err if the snapshot failed or was cancelled.
    pub(crate) fn check(&self) -> Result<()> {
        if self.cancel_requested.load(Ordering::Acquire) {
            return Err(Error::Cancelled);
        }
        match &self.state.lock().failure {
            Some(reason) => Err(Error::InvalidSnapshot(reason.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn set_stage(&self, stage: JobStage) {
        *self.stage.lock() = stage;
    }
}
