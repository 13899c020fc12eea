//! The engine: the public API, the write path and recovery.
//!
//! Write path (DESIGN §3; the page latch is held from step 2 to step 4, so redo order = apply
//! order):
//! 1. throttle if dirty bytes are past the hard limit (before entering an epoch, so a throttled
//!    writer never holds up a cut), then register in the current epoch `E`;
//! 2. latch the page; if its latest image belongs to an epoch newer than `E`, the cut has passed
//!    this writer: unlatch, leave `E` and retry (nothing was logged yet);
//! 3. if the latest image belongs to an older epoch whose checkpoint has not written it yet, keep
//!    it as the page's checkpoint image (K2);
//! 4. append the redo record (a full page image on the page's first write in `E`, torn-page
//!    protection), publish the new image tagged `E`, mark the page dirty in `E`;
//! 5. unlatch and leave `E`.
//!
//! Drop: a writer holds its partition's write gate (the read side of the allocation lock) from
//! registration to publish, and checks there that the partition is not dropped; `drop_partition`
//! logs and marks the drop under the allocation lock, in an epoch `D` that is still current once
//! it holds it (else it retries). So a write either precedes the drop, with a receipt epoch
//! `<= D`, or fails with `NoSuchPartition` having logged nothing. The checkpoint of `D` writes
//! none of the partition's pages and returns their dirty bytes; deleting its file returns the
//! resident ones (L3).
//!
//! Recovery (`Engine::open`): read the control file (refuse to open on any corruption, never
//! start empty over data), open the partitions it lists, open the redo log (cutting a torn tail
//! and reporting it), and replay every record from the control file's replay-start LSN. The
//! replayed state is dirty in the first epoch after the checkpoint, so the next checkpoint makes
//! it durable in the partition files (R1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bugs::{self, Bug};
use crate::checkpoint::{
    self, CheckpointCut, CheckpointListener, CheckpointOutcome, CutPartition, Listeners, Schedule,
    Trigger,
};
use crate::control::{self, ControlData};
use crate::epoch::Epochs;
use crate::error::{Error, IoContext, Result};
use crate::format;
use crate::jobs::{JobStatus, Jobs};
use crate::layout::{
    self, CONTROL_FILE_NAME, CONTROL_TMP_FILE_NAME, LOCK_FILE_NAME, PARTITIONS_DIR,
    SNAPSHOTS_TMP_DIR, WAL_DIR,
};
use crate::lock::StoreLock;
use crate::memory::{Budget, PageImage, Partition, PartitionShape, Slot, Versioned};
use crate::snapshot::task::{SnapshotClaim, SnapshotHandle, SnapshotOptions};
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{thread, Arc, Condvar, Mutex, RwLock};
use crate::types::{Epoch, Lsn, PageId, PartitionId, WriteReceipt};
use crate::vfs::{OpenMode, StdFs, Vfs};
use crate::wal::{Record, TailCut, Wal, WalConfig};

/// Largest metadata key and value, in bytes.
pub const METADATA_KEY_BYTES_MAX: usize = 1024;
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

#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    write_retries: AtomicU64,
    checkpoint_images_kept: AtomicU64,
    pages_evicted: AtomicU64,
    writer_throttles: AtomicU64,
}

/// Metadata keys and their values over epochs (`None`: deleted).
type MetadataMap = BTreeMap<Vec<u8>, Versioned<Option<Vec<u8>>>>;

/// A page's partition and slot.
type SlotRef = (Arc<Partition>, Arc<Mutex<Slot>>);

/// State shared by the engine handle and the checkpointer thread.
pub(crate) struct Inner {
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
    pub(crate) checkpoint_serial: checkpoint::SerialLock,
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
    running_snapshot: Mutex<Option<String>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// An open store.
///
/// ```
/// use deltasnap::{Config, Engine, PartitionId};
///
/// let dir = tempfile::tempdir()?;
/// let engine = Engine::open(dir.path(), Config::default())?;
/// let partition = PartitionId(1);
/// engine.create_partition(partition)?;
/// let page = engine.allocate_page(partition)?;
/// let receipt = engine.write(page, 0, b"hello")?;
/// engine.sync()?; // every write logged before this call is now durable
/// assert_eq!(&engine.read(page)?[..5], b"hello");
/// assert!(receipt.epoch >= 1);
/// engine.close()?;
///
/// let engine = Engine::open(dir.path(), Config::default())?;
/// assert_eq!(&engine.read(page)?[..5], b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Engine {
    inner: Arc<Inner>,
    checkpointer: Mutex<Option<thread::JoinHandle<()>>>,
    wal_writer: Mutex<Option<thread::JoinHandle<()>>>,
    recovery: RecoveryReport,
    /// Held from before recovery until `close` has written its last checkpoint.
    lock: Mutex<Option<StoreLock>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) the store in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Engine> {
        Engine::open_on(Arc::new(StdFs::new()), dir, config)
    }

    /// Opens (or creates) the store in `dir` on `vfs` (e.g. a [`crate::vfs::SimFs`] in tests).
    pub fn open_on(vfs: Arc<dyn Vfs>, dir: impl AsRef<Path>, config: Config) -> Result<Engine> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        // Before recovery reads a byte: a second engine must not replay, or later rewrite, a
        // store another one is changing.
        let lock = StoreLock::acquire(&vfs, &dir, config.create_if_missing)?;
        let (inner, recovery) = recover(vfs, dir, config)?;
        let inner = Arc::new(inner);
        let engine = Engine {
            inner,
            checkpointer: Mutex::new(None),
            wal_writer: Mutex::new(None),
            recovery,
            lock: Mutex::new(lock),
        };
        if engine.inner.config.background_checkpointer {
            // On an error, dropping `engine` stops and joins what was started.
            let thread_inner = Arc::clone(&engine.inner);
            *engine.wal_writer.lock() = Some(
                thread::Builder::new()
                    .name("deltasnap-wal-writer".into())
                    .spawn(move || {
                        // Not marked background: sync leaders wait for its writes (a commit's
                        // latency), so it must run as soon as its write returns.
                        thread_inner.wal.run_write_behind()
                    })
                    .map_err(|e| Error::io("spawn redo log writer thread", &engine.inner.dir, e))?,
            );
            let thread_inner = Arc::clone(&engine.inner);
            *engine.checkpointer.lock() = Some(
                thread::Builder::new()
                    .name("deltasnap-checkpointer".into())
                    .spawn(move || {
                        crate::sync::mark_background_thread();
                        checkpoint::run_thread(thread_inner)
                    })
                    .map_err(|e| Error::io("spawn checkpointer thread", &engine.inner.dir, e))?,
            );
        }
        Ok(engine)
    }

    /// What recovery found when this engine was opened (a cut redo tail, replayed records).
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The store's page size in bytes.
    pub fn page_size(&self) -> u32 {
        self.inner.page_size as u32
    }

    /// Bytes of a page that applications can write (`page_size` minus the footer).
    pub fn payload_size(&self) -> usize {
        format::payload_size(self.inner.page_size)
    }

    /// The current epoch (writes that start now get it or a later one).
    pub fn current_epoch(&self) -> Epoch {
        self.inner.epochs.current_epoch()
    }

    /// Creates an empty partition.
    pub fn create_partition(&self, id: PartitionId) -> Result<()> {
        self.inner.check_writable()?;
        self.inner.create_partition(id)
    }

    /// Drops a partition. Its file is deleted after the next checkpoint (and after any snapshot
    /// copying it released it); that checkpoint also returns the memory its pages held.
    ///
    /// A `write` or `allocate_page` racing the drop is ordered wholly before it or wholly after
    /// it: before, it returns `Ok` (and its receipt's epoch is at most the drop's, so the write
    /// is part of the store until the drop); after, it returns `Error::NoSuchPartition` and
    /// logs nothing. No call returns `Ok` for data the drop already discarded.
    pub fn drop_partition(&self, id: PartitionId) -> Result<()> {
        self.inner.check_writable()?;
        self.inner.drop_partition(id)
    }

    /// The partitions that exist now, with their logical page counts.
    pub fn partitions(&self) -> Vec<(PartitionId, u32)> {
        self.inner
            .partitions
            .read()
            .values()
            .filter(|p| p.exists())
            .map(|p| (p.id, p.page_count()))
            .collect()
    }

    /// Allocates a zeroed page at the end of `partition`.
    pub fn allocate_page(&self, partition: PartitionId) -> Result<PageId> {
        self.inner.check_writable()?;
        self.inner.allocate_page(partition)
    }

    /// Writes `bytes` at `offset` of the page's payload. Never blocked by a cut; throttled only
    /// when dirty pages pass the hard limit of the memory budget.
    ///
    /// The receipt's `epoch` says which checkpoint (and snapshot) the write belongs to: it is in
    /// a snapshot exactly when `receipt.epoch <= manifest.cut_epoch`. A page that was not
    /// allocated, or a write that runs past the payload, is an error, never a panic:
    ///
    /// ```
    /// use deltasnap::{Config, Engine, Error, PageId, PartitionId};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path(), Config::default())?;
    /// engine.create_partition(PartitionId(0))?;
    /// let page = engine.allocate_page(PartitionId(0))?;
    /// let first = engine.write(page, 0, b"v1")?;
    /// let second = engine.write(page, 2, b"v2")?;
    /// assert!(second.lsn > first.lsn);
    /// assert_eq!(&engine.read(page)?[..4], b"v1v2");
    ///
    /// let unallocated = PageId::new(PartitionId(0), 1);
    /// assert!(matches!(
    ///     engine.write(unallocated, 0, b"x"),
    ///     Err(Error::PageOutOfRange { .. })
    /// ));
    /// let too_long = vec![0u8; engine.payload_size() + 1];
    /// assert!(matches!(engine.write(page, 0, &too_long), Err(Error::OutOfPage { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&self, page: PageId, offset: usize, bytes: &[u8]) -> Result<WriteReceipt> {
        self.inner.check_writable()?;
        self.inner.write(page, offset, bytes)
    }

    /// Reads the page's payload (`payload_size()` bytes).
    pub fn read(&self, page: PageId) -> Result<Vec<u8>> {
        self.inner.check_open()?;
        self.inner.read(page)
    }

    /// Makes every write that returned before this call durable (group commit: concurrent
    /// callers share one fsync). Returns the durable LSN.
    pub fn sync(&self) -> Result<Lsn> {
        self.inner.check_open()?;
        self.inner.wal.sync()
    }

    /// Runs a checkpoint that starts after this call and waits for it. The background
    /// checkpointer runs them on its own (by interval, dirty bytes and redo bytes,
    /// [`Config`]); call this to bound recovery time or before copying the store by hand.
    ///
    /// It always returns: `Error::Closed` when [`Engine::close`] began before the checkpoint
    /// started (close's own final checkpoint makes every write durable), `Error::Poisoned` when
    /// a checkpoint failed or a [`CheckpointListener`] panicked (the reason names the panic).
    ///
    /// ```
    /// use deltasnap::{Config, Engine, JobKind, JobStage, PartitionId};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path(), Config::default())?;
    /// engine.create_partition(PartitionId(0))?;
    /// let page = engine.allocate_page(PartitionId(0))?;
    /// let receipt = engine.write(page, 0, b"checkpointed")?;
    /// engine.checkpoint()?;
    /// // The checkpoint of the write's epoch has ended: its page is in the partition file.
    /// let job = engine
    ///     .jobs()
    ///     .into_iter()
    ///     .filter(|job| job.kind == JobKind::Checkpoint)
    ///     .last()
    ///     .expect("the checkpoint is listed");
    /// assert_eq!(job.stage, JobStage::Complete);
    /// assert!(job.epoch >= Some(receipt.epoch));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(&self) -> Result<CheckpointOutcome> {
        self.inner.check_writable()?;
        if self.checkpointer.lock().is_none() {
            return checkpoint::run(&self.inner, Trigger::OnDemand);
        }
        let mut schedule = self.inner.schedule.lock();
        let target = schedule.started_run + 1;
        schedule.requested_run = schedule.requested_run.max(target);
        self.inner.schedule_changed.notify_all();
        while schedule.completed_run < target {
            if let Some(reason) = self.inner.poisoned() {
                return Err(Error::Poisoned(reason));
            }
            // Once shut down, the checkpointer starts no run (it looks before it starts one,
            // under this lock): a run not started yet never will be (L2). `close`'s own final
            // checkpoint makes the writes durable instead.
            if schedule.shutdown
                && schedule.started_run < target
                && !bugs::active(Bug::CheckpointerIgnoresPendingOnShutdown)
            {
                return Err(Error::Closed);
            }
            schedule = self
                .inner
                .schedule_changed
                .wait_timeout(schedule, Duration::from_millis(50))
                .0;
        }
        match &schedule.last_result {
            Some(Ok(outcome)) => Ok(outcome.clone()),
            Some(Err(message)) => Err(Error::Poisoned(message.clone())),
            None => unreachable!("a completed run records its result"),
        }
    }

    /// Sets metadata `key` to `value`. Metadata is logged like pages, survives a crash once
    /// synced, and a snapshot captures it as of its cut.
    ///
    /// ```
    /// use deltasnap::{Config, Engine};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path(), Config::default())?;
    /// engine.metadata_put(b"schema", b"v1")?;
    /// engine.sync()?;
    /// engine.close()?;
    ///
    /// let engine = Engine::open(dir.path(), Config::default())?;
    /// assert_eq!(engine.metadata_get(b"schema")?, Some(b"v1".to_vec()));
    /// engine.metadata_delete(b"schema")?;
    /// assert_eq!(engine.metadata_get(b"schema")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metadata_put(&self, key: &[u8], value: &[u8]) -> Result<WriteReceipt> {
        self.inner.check_writable()?;
        if value.len() > METADATA_VALUE_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "metadata value of {} bytes is over the limit of {METADATA_VALUE_BYTES_MAX}",
                value.len()
            )));
        }
        self.inner.metadata_set(key, Some(value.to_vec()))
    }

    /// Deletes metadata `key`.
    pub fn metadata_delete(&self, key: &[u8]) -> Result<WriteReceipt> {
        self.inner.check_writable()?;
        self.inner.metadata_set(key, None)
    }

    /// The value of metadata `key`.
    pub fn metadata_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.check_open()?;
        Ok(self
            .inner
            .metadata
            .lock()
            .get(key)
            .and_then(|v| v.latest().clone()))
    }

    /// The whole metadata map as it is now.
    pub fn metadata(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        self.inner.check_open()?;
        Ok(self
            .inner
            .metadata
            .lock()
            .iter()
            .filter_map(|(k, v)| v.latest().clone().map(|value| (k.clone(), value)))
            .collect())
    }

    /// Running and recently ended checkpoint and snapshot jobs.
    pub fn jobs(&self) -> Vec<JobStatus> {
        self.inner.jobs.list()
    }

    /// Why the engine refuses writes, if it does (a failed checkpoint).
    pub fn poisoned(&self) -> Option<String> {
        self.inner.poisoned()
    }

    /// Bytes of page images in memory now, and of those the dirty ones.
    pub fn memory_usage(&self) -> (u64, u64) {
        (self.inner.budget.resident(), self.inner.budget.dirty())
    }

    /// What the engine did since it was opened.
    pub fn stats(&self) -> EngineStats {
        let c = &self.inner.counters;
        EngineStats {
            writes: c.writes.load(Ordering::Relaxed),
            write_retries: c.write_retries.load(Ordering::Relaxed),
            checkpoint_images_kept: c.checkpoint_images_kept.load(Ordering::Relaxed),
            pages_evicted: c.pages_evicted.load(Ordering::Relaxed),
            writer_throttles: c.writer_throttles.load(Ordering::Relaxed),
        }
    }

    /// Registers a checkpoint listener; it sees every checkpoint that begins after this returns.
    pub fn add_checkpoint_listener(&self, listener: Arc<dyn CheckpointListener>) -> u64 {
        self.inner.add_listener(listener)
    }

    /// Removes a listener; a checkpoint already running keeps calling it until it ends.
    pub fn remove_checkpoint_listener(&self, id: u64) {
        self.inner.remove_listener(id)
    }

    /// Starts an online snapshot into `<options.target_dir>/<options.name>` while writes and
    /// checkpoints go on. It forces a checkpoint `S` and captures exactly the writes whose
    /// receipt epoch is `<= S` (the manifest's `cut_epoch`). At most one snapshot runs at a time.
    ///
    /// ```
    /// use deltasnap::{Config, Engine, PartitionId, SnapshotOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path().join("store"), Config::default())?;
    /// engine.create_partition(PartitionId(1))?;
    /// let page = engine.allocate_page(PartitionId(1))?;
    /// let receipt = engine.write(page, 0, b"in the snapshot")?;
    /// let snapshot = engine.snapshot(SnapshotOptions::new(dir.path(), "first"))?;
    /// let manifest = snapshot.wait()?;
    /// assert!(receipt.epoch <= manifest.cut_epoch);
    /// assert!(deltasnap::verify_snapshot(dir.path().join("first"))?.is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self, options: SnapshotOptions) -> Result<SnapshotHandle> {
        self.inner.check_writable()?;
        crate::snapshot::task::start(&self.inner, options)
    }

    /// Stops the background threads, makes every write durable with a final checkpoint, and
    /// closes the store. Later calls return `Error::Closed`; a `checkpoint()` waiting for a run
    /// the checkpointer had not started returns `Error::Closed` too (no checkpoint runs after
    /// the final one). Dropping an engine closes it too (logging any error instead of
    /// returning it).
    pub fn close(&self) -> Result<()> {
        // One close at a time: a second caller waits for the first, then finds the engine closed
        // (and never sees the store unlocked while the first still writes).
        let mut lock = self.lock.lock();
        if self.inner.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        {
            let mut schedule = self.inner.schedule.lock();
            schedule.shutdown = true;
        }
        self.inner.schedule_changed.notify_all();
        if let Some(handle) = self.checkpointer.lock().take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.wal_writer.lock().take() {
            self.inner.wal.stop_write_behind();
            let _ = handle.join();
        }
        let result = match self.inner.poisoned() {
            Some(reason) => Err(Error::Poisoned(reason)),
            None => self.inner.wal.sync().and_then(|_| {
                match checkpoint::run(&self.inner, Trigger::Close) {
                    // A concurrent `close` ran the final checkpoint.
                    Err(Error::Closed) | Ok(_) => Ok(()),
                    Err(error) => Err(error),
                }
            }),
        };
        self.inner.closed.store(true, Ordering::Release);
        // The last byte this engine writes is behind it: another engine may open the store.
        drop(lock.take());
        result
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(dir = %self.inner.dir.display(), %error, "closing engine on drop failed");
        }
    }
}

impl Inner {
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

    /// Takes the one snapshot slot of this store.
    pub(crate) fn claim_snapshot_slot(self: &Arc<Self>, name: &str) -> Result<SnapshotClaim> {
        let mut running = self.running_snapshot.lock();
        if let Some(other) = running.as_ref() {
            return Err(Error::SnapshotRunning(other.clone()));
        }
        *running = Some(name.to_string());
        Ok(SnapshotClaim::new(Arc::clone(self)))
    }

    pub(crate) fn release_snapshot_slot(&self) {
        *self.running_snapshot.lock() = None;
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

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
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

    /// A partition that exists now.
    fn partition(&self, id: PartitionId) -> Result<Arc<Partition>> {
        match self.partitions.read().get(&id) {
            Some(p) if p.exists() => Ok(Arc::clone(p)),
            _ => Err(Error::NoSuchPartition(id)),
        }
    }

    pub(crate) fn partitions_including_dropped(&self) -> BTreeMap<PartitionId, Arc<Partition>> {
        self.partitions.read().clone()
    }

    fn partition_path(&self, id: PartitionId) -> PathBuf {
        layout::partition_path(&self.dir, id)
    }

    /// Before entering an epoch: wait while dirty images are past the hard limit, asking for a
    /// checkpoint. The waiting writer holds no latch and no epoch, so the checkpoint it waits for
    /// can always run.
    fn throttle(&self) -> Result<()> {
        if self.budget.dirty() < self.budget.dirty_checkpoint_bytes {
            return Ok(());
        }
        self.schedule_changed.notify_all();
        if self.budget.dirty() < self.budget.dirty_throttle_bytes {
            return Ok(());
        }
        let started = Instant::now();
        self.counters
            .writer_throttles
            .fetch_add(1, Ordering::Relaxed);
        if !self.config.background_checkpointer {
            // Nobody else will checkpoint: the throttled writer does it. It holds no latch and
            // is in no epoch, so the cut it takes cannot wait on itself.
            checkpoint::run(self, Trigger::DirtyBytes)?;
            return Ok(());
        }
        let mut schedule = self.schedule.lock();
        while self.budget.dirty() >= self.budget.dirty_throttle_bytes {
            if let Some(reason) = self.poisoned() {
                return Err(Error::Poisoned(reason));
            }
            if schedule.shutdown {
                break;
            }
            if schedule.requested_run <= schedule.started_run {
                schedule.requested_run = schedule.started_run + 1;
                self.schedule_changed.notify_all();
            }
            schedule = self
                .schedule_changed
                .wait_timeout(schedule, Duration::from_millis(5))
                .0;
        }
        metrics::histogram!("deltasnap_writer_throttle_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn after_memory_growth(&self) {
        if self.budget.over_memory() {
            let partitions: Vec<_> = self.partitions.read().values().cloned().collect();
            let evicted = self.budget.evict(&partitions);
            self.counters
                .pages_evicted
                .fetch_add(evicted, Ordering::Relaxed);
            metrics::counter!("deltasnap_pages_evicted_total").increment(evicted);
        }
    }

    fn write(&self, page: PageId, offset: usize, bytes: &[u8]) -> Result<WriteReceipt> {
        let payload_size = format::payload_size(self.page_size);
        if offset
            .checked_add(bytes.len())
            .is_none_or(|end| end > payload_size)
        {
            return Err(Error::OutOfPage {
                offset,
                len: bytes.len(),
                payload_size,
            });
        }
        let partition = self.partition(page.partition)?;
        let slot = partition.slot(page.index)?;
        self.throttle()?;
        let mut grew_memory = false;
        let receipt = loop {
            let guard = self.epochs.enter();
            let epoch = guard.epoch();
            // Held until the write is published: a drop orders wholly before it or after it.
            let _not_dropped = partition.write_gate()?;
            let mut latch = slot.lock();
            if latch.image_epoch > epoch && !bugs::active(Bug::NoRetryAfterCut) {
                // The cut passed this writer (step 2).
                drop(latch);
                drop(guard);
                self.counters.write_retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("deltasnap_write_retries_total").increment(1);
                continue;
            }
            let base = match &latch.image {
                Some(image) => Arc::clone(image),
                None => {
                    let image =
                        Arc::new(partition.read_page_from_file(page.index, self.page_size)?);
                    latch.image = Some(Arc::clone(&image));
                    self.budget.add_resident(1);
                    grew_memory = true;
                    image
                }
            };
            // Step 3: keep the image the running checkpoint still has to write.
            if latch.unwritten
                && latch.image_epoch < epoch
                && latch.checkpoint_image.is_none()
                && !bugs::active(Bug::NoCheckpointImage)
            {
                latch.checkpoint_image = Some(Arc::clone(&base));
                self.counters
                    .checkpoint_images_kept
                    .fetch_add(1, Ordering::Relaxed);
                self.budget.add_resident(1);
                self.budget.add_dirty(1);
                grew_memory = true;
            }
            let mut new_bytes = base.bytes.clone();
            new_bytes[offset..offset + bytes.len()].copy_from_slice(bytes);
            // Step 4: log, then publish.
            let record = if latch.logged_full_in != epoch {
                Record::PageImage {
                    epoch,
                    page,
                    payload: new_bytes[..payload_size].to_vec(),
                }
            } else {
                Record::PageDelta {
                    epoch,
                    page,
                    offset: offset as u32,
                    bytes: bytes.to_vec(),
                }
            };
            let lsn = match self.wal.append(&record) {
                Ok(lsn) => lsn,
                Err(error) => {
                    self.poison(format!("redo log append failed: {error}"));
                    return Err(error);
                }
            };
            let first_in_epoch = latch.image_epoch != epoch;
            latch.image = Some(Arc::new(PageImage {
                bytes: new_bytes,
                lsn,
            }));
            latch.image_epoch = epoch;
            latch.logged_full_in = epoch;
            if !latch.unwritten {
                latch.unwritten = true;
                self.budget.add_dirty(1);
            }
            if first_in_epoch {
                guard.state().mark_dirty(page);
            }
            break WriteReceipt { lsn, epoch };
        };
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("deltasnap_writes_total").increment(1);
        if grew_memory {
            self.after_memory_growth();
        }
        Ok(receipt)
    }

    fn read(&self, page: PageId) -> Result<Vec<u8>> {
        let partition = self.partition(page.partition)?;
        let slot = partition.slot(page.index)?;
        let payload_size = format::payload_size(self.page_size);
        let mut latch = slot.lock();
        if let Some(image) = &latch.image {
            return Ok(image.bytes[..payload_size].to_vec());
        }
        let image = partition.read_page_from_file(page.index, self.page_size)?;
        let payload = image.bytes[..payload_size].to_vec();
        if !self.budget.over_memory() {
            latch.image = Some(Arc::new(image));
            self.budget.add_resident(1);
        }
        Ok(payload)
    }

    fn allocate_page(&self, id: PartitionId) -> Result<PageId> {
        let partition = self.partition(id)?;
        self.throttle()?;
        let page = loop {
            let guard = self.epochs.enter();
            let epoch = guard.epoch();
            let mut slots = partition.allocation_lock();
            let mut shape = partition.shape.lock();
            if shape.latest_epoch() > epoch {
                continue;
            }
            if !shape.latest().exists {
                return Err(Error::NoSuchPartition(id));
            }
            let index = u32::try_from(slots.len())
                .ok()
                .filter(|&i| i < u32::MAX)
                .ok_or_else(|| Error::InvalidArgument(format!("partition {id} is full")))?;
            let lsn = self.wal.append(&Record::Allocate {
                epoch,
                partition: id,
                page_count: index + 1,
            })?;
            slots.push(Arc::new(Mutex::new(Slot {
                image: Some(Arc::new(PageImage::zeroed(self.page_size, lsn))),
                image_epoch: epoch,
                unwritten: true,
                logged_full_in: 0,
                checkpoint_image: None,
            })));
            shape.set(
                epoch,
                PartitionShape {
                    exists: true,
                    page_count: index + 1,
                },
            );
            self.budget.add_resident(1);
            self.budget.add_dirty(1);
            let page = PageId::new(id, index);
            guard.state().mark_dirty(page);
            break page;
        };
        self.after_memory_growth();
        Ok(page)
    }

    fn create_partition(&self, id: PartitionId) -> Result<()> {
        let guard = self.epochs.enter();
        let epoch = guard.epoch();
        let mut partitions = self.partitions.write();
        if let Some(existing) = partitions.get(&id) {
            if existing.exists() {
                return Err(Error::PartitionExists(id));
            }
            return Err(Error::InvalidArgument(format!(
                "partition {id} was dropped and its file is not deleted yet; checkpoint first"
            )));
        }
        let path = self.partition_path(id);
        let file = self
            .vfs
            .open(&path, OpenMode::Create)
            .ctx("create partition file", &path)?;
        // A file left by a create whose redo record never became durable holds nothing we owe.
        file.set_len(0).ctx("truncate partition file", &path)?;
        self.wal.append(&Record::CreatePartition {
            epoch,
            partition: id,
        })?;
        let partition = Partition::new(id, path, file, epoch, 0);
        partition.needs_dir_sync.store(true, Ordering::Release);
        partitions.insert(id, Arc::new(partition));
        guard.state().mark_changed();
        Ok(())
    }

    fn drop_partition(&self, id: PartitionId) -> Result<()> {
        let partition = self.partition(id)?;
        loop {
            let guard = self.epochs.enter();
            let epoch = guard.epoch();
            // Waits for the writes in flight (`Partition::write_gate`) and keeps new ones out.
            let _slots = partition.allocation_lock();
            // A write that went before holds an epoch no newer than the current one. If a cut
            // passed this drop, such a write may belong to the next epoch: its receipt would
            // name an epoch in which the partition no longer exists. Retry in the new epoch,
            // like a writer whose page the cut passed (step 2).
            if self.epochs.current_epoch() != epoch {
                continue;
            }
            let mut shape = partition.shape.lock();
            if shape.latest_epoch() > epoch {
                continue;
            }
            if !shape.latest().exists {
                return Err(Error::NoSuchPartition(id));
            }
            self.wal.append(&Record::DropPartition {
                epoch,
                partition: id,
            })?;
            partition.mark_dropped();
            let page_count = shape.latest().page_count;
            shape.set(
                epoch,
                PartitionShape {
                    exists: false,
                    page_count,
                },
            );
            guard.state().mark_changed();
            return Ok(());
        }
    }

    fn metadata_set(&self, key: &[u8], value: Option<Vec<u8>>) -> Result<WriteReceipt> {
        if key.is_empty() || key.len() > METADATA_KEY_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "metadata key must be 1..={METADATA_KEY_BYTES_MAX} bytes, got {}",
                key.len()
            )));
        }
        loop {
            let guard = self.epochs.enter();
            let epoch = guard.epoch();
            let mut metadata = self.metadata.lock();
            if metadata.get(key).is_some_and(|v| v.latest_epoch() > epoch) {
                continue;
            }
            let lsn = self.wal.append(&Record::MetadataPut {
                epoch,
                key: key.to_vec(),
                value: value.clone(),
            })?;
            match metadata.get_mut(key) {
                Some(versioned) => versioned.set(epoch, value),
                None => {
                    let mut versioned = Versioned::new(0, None);
                    versioned.set(epoch, value);
                    metadata.insert(key.to_vec(), versioned);
                }
            }
            guard.state().mark_changed();
            return Ok(WriteReceipt { lsn, epoch });
        }
    }

    /// The store as of the end of `epoch` (after its drain): partitions, page counts, metadata.
    pub(crate) fn cut_view(&self, epoch: Epoch, replay_start_lsn: Lsn) -> CheckpointCut {
        let partitions = self
            .partitions
            .read()
            .values()
            .filter_map(|p| {
                let shape = *p.shape.lock().at(epoch)?;
                shape.exists.then(|| CutPartition {
                    id: p.id,
                    page_count: shape.page_count,
                    file: Arc::clone(&p.file),
                    path: p.path.clone(),
                })
            })
            .collect();
        let metadata = self
            .metadata
            .lock()
            .iter()
            .filter_map(|(k, v)| {
                v.at(epoch)
                    .cloned()
                    .flatten()
                    .map(|value| (k.clone(), value))
            })
            .collect();
        CheckpointCut {
            epoch,
            replay_start_lsn,
            page_size: self.page_size as u32,
            partitions,
            metadata,
        }
    }

    /// fsyncs the partitions directory if a partition file was created since the last time.
    pub(crate) fn sync_partitions_dir(
        &self,
        partitions: &BTreeMap<PartitionId, Arc<Partition>>,
    ) -> Result<()> {
        let pending: Vec<_> = partitions
            .values()
            .filter(|p| p.needs_dir_sync.load(Ordering::Acquire))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let dir = self.dir.join(PARTITIONS_DIR);
        self.vfs
            .sync_dir(&dir)
            .ctx("fsync partitions directory", &dir)?;
        for partition in pending {
            partition.needs_dir_sync.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Deletes the files of partitions dropped at or before `epoch` that no snapshot holds.
    pub(crate) fn delete_dropped_partitions(&self, epoch: Epoch) -> Result<()> {
        let held = self.held_partitions.lock().clone();
        let doomed: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .values()
            .filter(|p| {
                let shape = p.shape.lock();
                !shape.latest().exists
                    && shape.at(epoch).is_none_or(|s| !s.exists)
                    && !held.contains_key(&p.id)
            })
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for partition in &doomed {
            match self.vfs.remove_file(&partition.path) {
                Ok(()) => {}
                // An earlier cleanup removed the file (and released its memory) but failed
                // before forgetting the partition: only the steps below are left.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(Error::io(
                        "delete dropped partition file",
                        &partition.path,
                        error,
                    ))
                }
            }
            partition.release_resident(&self.budget);
        }
        let dir = self.dir.join(PARTITIONS_DIR);
        self.vfs
            .sync_dir(&dir)
            .ctx("fsync partitions directory", &dir)?;
        let mut partitions = self.partitions.write();
        for partition in doomed {
            partitions.remove(&partition.id);
        }
        Ok(())
    }

    /// Keeps the files of `ids` from being deleted by a drop until [`Inner::release_partitions`].
    pub(crate) fn hold_partitions(&self, ids: &[PartitionId]) {
        let mut held = self.held_partitions.lock();
        for id in ids {
            *held.entry(*id).or_insert(0) += 1;
        }
    }

    pub(crate) fn release_partitions(&self, ids: &[PartitionId]) {
        let mut held = self.held_partitions.lock();
        for id in ids {
            if let Some(count) = held.get_mut(id) {
                *count -= 1;
                if *count == 0 {
                    held.remove(id);
                }
            }
        }
    }
}

/// Opens or creates the store and replays the redo log (the module doc's recovery).
fn recover(vfs: Arc<dyn Vfs>, dir: PathBuf, config: Config) -> Result<(Inner, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    let control = match control::read(&vfs, &dir)? {
        Some(control) => control,
        None => {
            create_store(&vfs, &dir, &config)?;
            report.created = true;
            control::read(&vfs, &dir)?.ok_or_else(|| Error::NotAStore {
                dir: dir.clone(),
                reason: "control file vanished right after creation".into(),
            })?
        }
    };
    if control.page_size != config.page_size {
        return Err(Error::PageSizeMismatch {
            dir,
            on_disk: control.page_size,
            configured: config.page_size,
        });
    }
    let page_size = control.page_size as usize;
    let tmp_control = dir.join(CONTROL_TMP_FILE_NAME);
    if vfs.exists(&tmp_control).ctx("stat", &tmp_control)? {
        vfs.remove_file(&tmp_control)
            .ctx("remove stale control file", &tmp_control)?;
    }
    let unfinished = crate::snapshot::task::remove_unfinished(&vfs, &dir)?;
    report.unfinished_snapshots_removed = unfinished.removed;
    report.unfinished_snapshot_cleanups_failed = unfinished.failed;
    let recovered_epoch = control.checkpoint_epoch + 1;
    let partitions_dir = dir.join(PARTITIONS_DIR);
    vfs.create_dir_all(&partitions_dir)
        .ctx("create partitions directory", &partitions_dir)?;

    // Partitions the control file lists.
    let mut partitions: BTreeMap<PartitionId, Arc<Partition>> = BTreeMap::new();
    for (&id, &page_count) in &control.partitions {
        let path = layout::partition_path_in(&partitions_dir, id);
        let file = vfs.open(&path, OpenMode::ReadWrite).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Corrupted {
                    file: path.clone(),
                    page: None,
                    reason: format!(
                        "partition {id} is in the control file but its file is missing"
                    ),
                }
            } else {
                Error::io("open partition file", &path, e)
            }
        })?;
        let len = file.len().ctx("stat partition file", &path)?;
        let needed = page_count as u64 * page_size as u64;
        if len < needed {
            return Err(Error::Corrupted {
                file: path,
                page: Some(len / page_size as u64),
                reason: format!("file has {len} bytes, the control file says {page_count} pages ({needed} bytes)"),
            });
        }
        let partition = Partition::new(id, path, file, control.checkpoint_epoch, page_count);
        partitions.insert(id, Arc::new(partition));
    }
    let mut metadata: MetadataMap = control
        .metadata
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Versioned::new(control.checkpoint_epoch, Some(v.clone())),
            )
        })
        .collect();

    let budget = Budget::new(
        control.page_size,
        config.memory_budget_bytes,
        config.dirty_checkpoint_percent,
        config.dirty_throttle_percent,
    );
    let epochs = Epochs::new(recovered_epoch);
    let (wal, wal_report) = Wal::open(
        Arc::clone(&vfs),
        &dir.join(WAL_DIR),
        WalConfig {
            page_size: control.page_size,
            segment_bytes_max: config.wal_segment_bytes,
            ..WalConfig::default()
        },
        control.replay_start_lsn,
    )?;
    report.wal_tail_cut = wal_report.tail_cut;
    if wal.end_lsn() < control.replay_start_lsn {
        // The control file only names a replay start the log had reached durably; a log ending
        // before it lost synced records (the tail cut could not tell them from a torn tail).
        return Err(Error::Corrupted {
            file: dir.join(WAL_DIR),
            page: None,
            reason: format!(
                "redo log ends at LSN {} but the checkpoint needs it up to {}",
                wal.end_lsn(),
                control.replay_start_lsn
            ),
        });
    }

    // Replay.
    let mut needs_full_image: BTreeSet<PageId> = BTreeSet::new();
    let epoch_state = epochs.current();
    let mut replayer = Replayer {
        vfs: &vfs,
        partitions_dir: &partitions_dir,
        page_size,
        epoch: recovered_epoch,
        partitions: &mut partitions,
        metadata: &mut metadata,
        needs_full_image: &mut needs_full_image,
        budget: &budget,
        dirty: BTreeSet::new(),
        changed: false,
    };
    report.records_replayed = wal.replay(control.replay_start_lsn, |lsn, record| {
        replayer.apply(lsn, record)
    })?;
    let (dirty, changed) = (std::mem::take(&mut replayer.dirty), replayer.changed);
    if let Some(page) = needs_full_image.iter().next() {
        return Err(Error::Corrupted {
            file: partitions[&page.partition].path.clone(),
            page: Some(page.index as u64),
            reason: "page is torn on disk and the redo log holds no full image to repair it".into(),
        });
    }
    for page in dirty {
        epoch_state.mark_dirty(page);
    }
    if changed {
        epoch_state.mark_changed();
    }
    drop(epoch_state);

    // Pages past the recovered page count were allocated by records that never became durable;
    // a checkpoint the crash interrupted may have written them. They are not part of the store.
    for partition in partitions.values() {
        let len = partition
            .file
            .len()
            .ctx("stat partition file", &partition.path)?;
        let needed = partition.page_count() as u64 * page_size as u64;
        if len > needed {
            partition
                .file
                .set_len(needed)
                .ctx("trim partition file", &partition.path)?;
            partition
                .file
                .sync_all()
                .ctx("fsync partition file", &partition.path)?;
            tracing::info!(file = %partition.path.display(), bytes = len - needed, "trimmed pages past the recovered page count");
        }
    }

    // Files no durable state references: a create whose record was lost, or a drop whose
    // cleanup the crash interrupted.
    for name in vfs
        .read_dir(&partitions_dir)
        .ctx("list partitions directory", &partitions_dir)?
    {
        let owned =
            layout::parse_partition_file_name(&name).is_some_and(|id| partitions.contains_key(&id));
        if !owned {
            let path = partitions_dir.join(&name);
            vfs.remove_file(&path)
                .ctx("remove stale partition file", &path)?;
            report.stale_files_removed.push(path);
        }
    }

    report.checkpoint_epoch = control.checkpoint_epoch;
    report.replay_start_lsn = control.replay_start_lsn;
    report.end_lsn = wal.end_lsn();
    if let Some(cut) = &report.wal_tail_cut {
        tracing::warn!(segment = %cut.segment.display(), lsn = cut.lsn, bytes_dropped = cut.bytes_dropped, reason = %cut.reason, "cut torn redo tail");
    }
    tracing::info!(dir = %dir.display(), checkpoint = control.checkpoint_epoch, records = report.records_replayed, "store opened");

    let inner = Inner {
        vfs,
        dir,
        page_size,
        wal,
        epochs,
        partitions: RwLock::new(partitions),
        metadata: Mutex::new(metadata),
        budget,
        listeners: RwLock::new(Vec::new()),
        next_listener_id: AtomicU64::new(1),
        schedule: Mutex::new(Schedule::default()),
        schedule_changed: Condvar::new(),
        checkpoint_serial: Mutex::new(false),
        poison: Mutex::new(None),
        poisoned_flag: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        last_replay_start: AtomicU64::new(control.replay_start_lsn),
        opened_at: Instant::now(),
        jobs: Jobs::default(),
        held_partitions: Mutex::new(BTreeMap::new()),
        counters: Counters::default(),
        running_snapshot: Mutex::new(None),
        config,
    };
    Ok((inner, report))
}

/// Creates an empty store in `dir`, refusing a directory that holds anything else.
fn create_store(vfs: &Arc<dyn Vfs>, dir: &Path, config: &Config) -> Result<()> {
    if vfs.exists(dir).ctx("stat store directory", dir)? {
        let entries = vfs.read_dir(dir).ctx("list store directory", dir)?;
        let foreign: Vec<_> = entries
            .iter()
            .filter(|e| e.as_str() != SNAPSHOTS_TMP_DIR && e.as_str() != LOCK_FILE_NAME)
            .collect();
        if !foreign.is_empty() {
            return Err(Error::NotAStore {
                dir: dir.to_path_buf(),
                reason: format!(
                    "no {CONTROL_FILE_NAME} file, but the directory is not empty ({} entries, e.g. {:?}); refusing to create a store over it",
                    foreign.len(),
                    foreign[0]
                ),
            });
        }
    } else if !config.create_if_missing {
        return Err(Error::NotAStore {
            dir: dir.to_path_buf(),
            reason: "directory does not exist and create_if_missing is off".into(),
        });
    }
    if !config.create_if_missing {
        return Err(Error::NotAStore {
            dir: dir.to_path_buf(),
            reason: "no control file and create_if_missing is off".into(),
        });
    }
    vfs.create_dir_all(dir).ctx("create store directory", dir)?;
    for sub in [PARTITIONS_DIR, WAL_DIR] {
        let path = dir.join(sub);
        vfs.create_dir_all(&path)
            .ctx("create store directory", &path)?;
    }
    vfs.sync_dir(dir).ctx("fsync store directory", dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        vfs.sync_dir(parent).ctx("fsync parent directory", parent)?;
    }
    control::write(
        vfs,
        dir,
        &ControlData {
            page_size: config.page_size,
            ..ControlData::default()
        },
    )
}

/// Applies redo records to the recovered state.
struct Replayer<'a> {
    vfs: &'a Arc<dyn Vfs>,
    partitions_dir: &'a Path,
    page_size: usize,
    epoch: Epoch,
    partitions: &'a mut BTreeMap<PartitionId, Arc<Partition>>,
    metadata: &'a mut MetadataMap,
    needs_full_image: &'a mut BTreeSet<PageId>,
    budget: &'a Budget,
    dirty: BTreeSet<PageId>,
    changed: bool,
}

impl Replayer<'_> {
    fn live_partition(&self, id: PartitionId) -> Option<Arc<Partition>> {
        self.partitions.get(&id).filter(|p| p.exists()).cloned()
    }

    fn slot_for(&self, page: PageId, lsn: Lsn) -> Result<Option<SlotRef>> {
        // Records for a dropped partition are skipped: the drop came later in the log.
        let Some(partition) = self.live_partition(page.partition) else {
            return Ok(None);
        };
        match partition.slot(page.index) {
            Ok(slot) => Ok(Some((partition, slot))),
            Err(_) => Err(Error::Corrupted {
                file: partition.path.clone(),
                page: Some(page.index as u64),
                reason: format!("redo record at LSN {lsn} writes a page that was never allocated"),
            }),
        }
    }

    fn publish(&mut self, page: PageId, slot: &Mutex<Slot>, image: PageImage) {
        let mut latch = slot.lock();
        if latch.image.is_none() {
            self.budget.add_resident(1);
        }
        if !latch.unwritten {
            self.budget.add_dirty(1);
        }
        latch.image = Some(Arc::new(image));
        latch.image_epoch = self.epoch;
        latch.unwritten = true;
        // The next write logs a full image again: torn-page protection across the restart.
        latch.logged_full_in = 0;
        self.dirty.insert(page);
    }

    fn apply(&mut self, lsn: Lsn, record: Record) -> Result<()> {
        let payload_size = format::payload_size(self.page_size);
        match record {
            Record::PageImage { page, payload, .. } => {
                let Some((_, slot)) = self.slot_for(page, lsn)? else {
                    return Ok(());
                };
                if payload.len() != payload_size {
                    return Err(Error::Corrupted {
                        file: self.partitions_dir.to_path_buf(),
                        page: Some(page.index as u64),
                        reason: format!("redo page image at LSN {lsn} has {} bytes", payload.len()),
                    });
                }
                let mut image = PageImage::zeroed(self.page_size, lsn);
                image.bytes[..payload_size].copy_from_slice(&payload);
                self.needs_full_image.remove(&page);
                self.publish(page, &slot, image);
            }
            Record::PageDelta {
                page,
                offset,
                bytes,
                ..
            } => {
                let Some((partition, slot)) = self.slot_for(page, lsn)? else {
                    return Ok(());
                };
                if self.needs_full_image.contains(&page) {
                    return Ok(());
                }
                let end = offset as usize + bytes.len();
                if end > payload_size {
                    return Err(Error::Corrupted {
                        file: partition.path.clone(),
                        page: Some(page.index as u64),
                        reason: format!(
                            "redo delta at LSN {lsn} ends at byte {end}, past the payload"
                        ),
                    });
                }
                let base = slot.lock().image.clone();
                let mut image = match base {
                    Some(image) => PageImage {
                        bytes: image.bytes.clone(),
                        lsn,
                    },
                    None => match partition.read_page_from_file(page.index, self.page_size) {
                        Ok(image) => image,
                        Err(Error::Corrupted { .. } | Error::ChecksumMismatch { .. }) => {
                            // Torn by a checkpoint the crash interrupted; a full image of the
                            // same page follows in the log (that checkpoint's epoch logged one).
                            self.needs_full_image.insert(page);
                            return Ok(());
                        }
                        Err(other) => return Err(other),
                    },
                };
                image.lsn = lsn;
                image.bytes[offset as usize..end].copy_from_slice(&bytes);
                self.publish(page, &slot, image);
            }
            Record::Allocate {
                partition: id,
                page_count,
                ..
            } => {
                let Some(partition) = self.live_partition(id) else {
                    return Ok(());
                };
                let mut slots = partition.allocation_lock();
                while (slots.len() as u32) < page_count {
                    let index = slots.len() as u32;
                    let slot = Arc::new(Mutex::new(Slot::default()));
                    slots.push(Arc::clone(&slot));
                    self.publish(
                        PageId::new(id, index),
                        &slot,
                        PageImage::zeroed(self.page_size, lsn),
                    );
                    self.needs_full_image.remove(&PageId::new(id, index));
                }
                partition.shape.lock().set(
                    self.epoch,
                    PartitionShape {
                        exists: true,
                        page_count: slots.len() as u32,
                    },
                );
                self.changed = true;
            }
            Record::CreatePartition { partition: id, .. } => {
                if self.partitions.get(&id).is_some_and(|p| p.exists()) {
                    return Ok(()); // already in the checkpoint
                }
                let path = layout::partition_path_in(self.partitions_dir, id);
                let file = self
                    .vfs
                    .open(&path, OpenMode::Create)
                    .ctx("create partition file", &path)?;
                file.set_len(0).ctx("truncate partition file", &path)?;
                let partition = Partition::new(id, path, file, self.epoch, 0);
                partition.needs_dir_sync.store(true, Ordering::Release);
                self.partitions.insert(id, Arc::new(partition));
                self.changed = true;
            }
            Record::DropPartition { partition: id, .. } => {
                if let Some(partition) = self.live_partition(id) {
                    let mut shape = partition.shape.lock();
                    let page_count = shape.latest().page_count;
                    shape.set(
                        self.epoch,
                        PartitionShape {
                            exists: false,
                            page_count,
                        },
                    );
                    drop(shape);
                    partition.mark_dropped();
                    self.dirty.retain(|p| p.partition != id);
                    if !bugs::active(Bug::DropLeaksDirtyBytes) {
                        // No checkpoint writes these pages: return their bytes now (L3).
                        for slot in partition.slots_snapshot() {
                            self.budget.release_dropped_page(&slot);
                        }
                        partition.release_resident(self.budget);
                    }
                    self.changed = true;
                }
            }
            Record::MetadataPut { key, value, .. } => {
                match self.metadata.get_mut(&key) {
                    Some(versioned) => {
                        versioned.set(self.epoch.max(versioned.latest_epoch()), value)
                    }
                    None => {
                        self.metadata.insert(key, Versioned::new(self.epoch, value));
                    }
                }
                self.changed = true;
            }
        }
        Ok(())
    }
}
