//! The store: the state an open engine shares between its handle, the checkpointer thread and a
//! running snapshot (the partitions and their page images, the metadata, the redo log, the
//! epochs, the memory budget, the checkpoint schedule and listeners), and the operations on it.
//!
//! - `write`: the write path (DESIGN §3), allocation and metadata;
//! - `read`: pages, metadata and partitions as they are now, and the store as of a cut;
//! - `partitions`: creating and dropping partitions, and their files' life (directory fsync,
//!   deletion after a drop, holds by a snapshot);
//! - `schedule`: the checkpoint schedule and what a checkpoint returns.
//!
//! The store calls nothing above it: the checkpointer (`checkpoint`) takes it from below, writers
//! are throttled before they reach it (`checkpoint::throttle`), and a snapshot reaches it through
//! `snapshot::host::SnapshotHost`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::config::{Config, EngineStats};
use crate::epoch::Epochs;
use crate::error::{Error, Result};
use crate::jobs::Jobs;
use crate::listener::{CheckpointListener, Listeners};
use crate::memory::{Budget, Partition, Versioned};
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Arc, Condvar, Mutex, RwLock};
use crate::types::{Lsn, PartitionId};
use crate::vfs::Vfs;
use crate::wal::Wal;

mod partitions;
mod read;
mod schedule;
mod write;

pub use schedule::CheckpointOutcome;
pub(crate) use schedule::{Schedule, SerialLock};

/// Cancels a running snapshot (what `SnapshotHandle::cancel` does).
pub(crate) type SnapshotCancel = Arc<dyn Fn() + Send + Sync>;

/// The snapshot holding the store's one snapshot slot.
struct RunningSnapshot {
    name: String,
    /// Set once its task exists.
    cancel: Option<SnapshotCancel>,
}

/// Metadata keys and their values over epochs (`None`: deleted).
pub(crate) type MetadataMap = BTreeMap<Vec<u8>, Versioned<Option<Vec<u8>>>>;

#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    write_retries: AtomicU64,
    checkpoint_images_kept: AtomicU64,
    pages_evicted: AtomicU64,
    writer_throttles: AtomicU64,
}

/// What recovery hands over to make a store of: the state it recovered.
pub(crate) struct Recovered {
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) page_size: usize,
    pub(crate) wal: Wal,
    pub(crate) epochs: Epochs,
    pub(crate) partitions: BTreeMap<PartitionId, Arc<Partition>>,
    pub(crate) metadata: MetadataMap,
    pub(crate) budget: Budget,
    pub(crate) replay_start_lsn: Lsn,
}

/// State shared by the engine handle, the checkpointer thread and a running snapshot.
pub(crate) struct Store {
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) page_size: usize,
    pub(crate) wal: Wal,
    pub(crate) epochs: Epochs,
    /// Every partition, including dropped ones whose file is not deleted yet.
    partitions: RwLock<BTreeMap<PartitionId, Arc<Partition>>>,
    metadata: Mutex<MetadataMap>,
    pub(crate) budget: Budget,
    pub(crate) listeners: RwLock<Listeners>,
    next_listener_id: AtomicU64,
    pub(crate) schedule: Mutex<Schedule>,
    pub(crate) schedule_changed: Condvar,
    pub(crate) checkpoint_serial: SerialLock,
    poison: Mutex<Option<String>>,
    poisoned_flag: AtomicBool,
    closed: AtomicBool,
    last_replay_start: AtomicU64,
    pub(crate) opened_at: Instant,
    pub(crate) jobs: Jobs,
    /// Partitions whose files must outlive a drop (a snapshot copying them), by hold count.
    held_partitions: Mutex<BTreeMap<PartitionId, u32>>,
    counters: Counters,
    /// The name of the running snapshot (at most one at a time).
    running_snapshot: Mutex<Option<RunningSnapshot>>,
    /// Signalled when the snapshot slot is freed.
    snapshot_slot_freed: Condvar,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The store recovery found, open and not poisoned.
    pub(crate) fn new(recovered: Recovered) -> Store {
        Store {
            vfs: recovered.vfs,
            dir: recovered.dir,
            page_size: recovered.page_size,
            wal: recovered.wal,
            epochs: recovered.epochs,
            partitions: RwLock::new(recovered.partitions),
            metadata: Mutex::new(recovered.metadata),
            budget: recovered.budget,
            listeners: RwLock::new(Vec::new()),
            next_listener_id: AtomicU64::new(1),
            schedule: Mutex::new(Schedule::default()),
            schedule_changed: Condvar::new(),
            checkpoint_serial: Mutex::new(false),
            poison: Mutex::new(None),
            poisoned_flag: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            last_replay_start: AtomicU64::new(recovered.replay_start_lsn),
            opened_at: Instant::now(),
            jobs: Jobs::default(),
            held_partitions: Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
            running_snapshot: Mutex::new(None),
            snapshot_slot_freed: Condvar::new(),
            config: recovered.config,
        }
    }

    pub(crate) fn add_listener(&self, listener: Arc<dyn CheckpointListener>) -> u64 {
        let id = self.next_listener_id.fetch_add(1, Ordering::Relaxed);
        self.listeners.write().push((id, listener));
        id
    }

    pub(crate) fn remove_listener(&self, id: u64) {
        self.listeners.write().retain(|(i, _)| *i != id);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the store closed: `check_open` fails from now on (`Engine::close`, last).
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Takes the one snapshot slot of this store for snapshot `name`.
    pub(crate) fn claim_snapshot_slot(&self, name: &str) -> Result<()> {
        let mut running = self.running_snapshot.lock();
        if let Some(other) = running.as_ref() {
            return Err(Error::SnapshotRunning(other.name.clone()));
        }
        *running = Some(RunningSnapshot {
            name: name.to_string(),
            cancel: None,
        });
        Ok(())
    }

    /// Tells the store how to cancel the snapshot holding the slot (for `close`).
    pub(crate) fn set_snapshot_cancel(&self, cancel: SnapshotCancel) {
        if let Some(running) = self.running_snapshot.lock().as_mut() {
            running.cancel = Some(cancel);
        }
    }

    pub(crate) fn release_snapshot_slot(&self) {
        *self.running_snapshot.lock() = None;
        self.snapshot_slot_freed.notify_all();
    }

    /// Cancels the running snapshot, if one runs, and waits until it has ended (its slot is
    /// freed after its last file operation). Bounded by one chunk's copy or one fsync: the task
    /// checks for the cancel between steps, and its rate limiter's wait listens for it.
    pub(crate) fn cancel_running_snapshot_and_wait(&self) {
        let mut running = self.running_snapshot.lock();
        let mut cancelled = false;
        while let Some(snapshot) = running.as_ref() {
            if !cancelled {
                if let Some(cancel) = snapshot.cancel.clone() {
                    drop(running);
                    cancel();
                    cancelled = true;
                    running = self.running_snapshot.lock();
                    continue;
                }
            }
            // Before its cancel is registered (between the slot's claim and the task's start),
            // the timeout brings us back to cancel it.
            running = self
                .snapshot_slot_freed
                .wait_timeout(running, std::time::Duration::from_millis(10))
                .0;
        }
    }

    /// Asks the checkpointer thread for a checkpoint that runs even if nothing changed.
    pub(crate) fn request_forced_checkpoint(&self) {
        self.schedule.lock().snapshot_requested = true;
        self.schedule_changed.notify_all();
    }

    pub(crate) fn poisoned(&self) -> Option<String> {
        if !self.poisoned_flag.load(Ordering::Acquire) {
            return None;
        }
        self.poison.lock().clone()
    }

    pub(crate) fn poison(&self, reason: String) {
        let mut poison = self.poison.lock();
        if poison.is_none() {
            *poison = Some(reason);
        }
        self.poisoned_flag.store(true, Ordering::Release);
        drop(poison);
        self.schedule_changed.notify_all();
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        match self.poisoned() {
            Some(reason) => Err(Error::Poisoned(reason)),
            None => Ok(()),
        }
    }

    pub(crate) fn last_replay_start(&self) -> Lsn {
        self.last_replay_start.load(Ordering::Acquire)
    }

    pub(crate) fn set_last_replay_start(&self, lsn: Lsn) {
        self.last_replay_start.store(lsn, Ordering::Release);
    }

    /// Counts a writer that waited because dirty pages passed the hard limit.
    pub(crate) fn count_writer_throttle(&self) {
        self.counters
            .writer_throttles
            .fetch_add(1, Ordering::Relaxed);
    }

    /// What the engine did since it was opened.
    pub(crate) fn stats(&self) -> EngineStats {
        let c = &self.counters;
        EngineStats {
            writes: c.writes.load(Ordering::Relaxed),
            write_retries: c.write_retries.load(Ordering::Relaxed),
            checkpoint_images_kept: c.checkpoint_images_kept.load(Ordering::Relaxed),
            pages_evicted: c.pages_evicted.load(Ordering::Relaxed),
            writer_throttles: c.writer_throttles.load(Ordering::Relaxed),
        }
    }
}
