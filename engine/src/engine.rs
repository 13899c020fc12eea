//! The engine: [`Engine`], an open store, with `open`, `close` and the public methods.
//!
//! Each method checks that the engine is open (and writable), then hands over to the layer that
//! does the work: the store (`store`: the write path, reads, partitions), the checkpointer
//! (`checkpoint`: runs, the background thread, writer throttling), recovery (`recovery`, at
//! open) and the snapshot task (`snapshot`). Writes are throttled here, between the store's
//! checks and its write path, so that the store never calls up into the checkpointer.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::bugs::{self, Bug};
use crate::calls::CallGate;
use crate::checkpoint::{self, CheckpointListener, CheckpointOutcome, Trigger};
use crate::config::{Config, EngineStats, RecoveryReport, METADATA_VALUE_BYTES_MAX};
use crate::error::{Error, Result};
use crate::format;
use crate::jobs::JobStatus;
use crate::lock::StoreLock;
use crate::recovery::recover;
use crate::snapshot::host::SnapshotHost;
use crate::snapshot::{task, SnapshotHandle, SnapshotOptions};
use crate::store::Store;
use crate::sync::{thread, Arc, Mutex};
use crate::types::{Epoch, Lsn, PageId, PartitionId, WriteReceipt};
use crate::vfs::{StdFs, Vfs};

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
    store: Arc<Store>,
    checkpointer: Mutex<Option<thread::JoinHandle<()>>>,
    wal_writer: Mutex<Option<thread::JoinHandle<()>>>,
    recovery: RecoveryReport,
    /// Held from before recovery until `close` has written its last checkpoint; after `close`,
    /// `None`, and `close_failure` says whether that close made every write durable.
    lock: Mutex<Option<StoreLock>>,
    /// Why the first `close` failed, if it did: a later `close` reports it again rather than
    /// `Ok` (only a close that returned `Ok` made every write durable).
    close_failure: Mutex<Option<String>>,
    /// The public calls in flight, which `close` waits for.
    calls: CallGate,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.store.dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) the store in `dir` on the real file system. See [`Engine::open_on`]
    /// for what opening does and its errors.
    ///
    /// ```
    /// use deltasnap::{Config, Engine, Error};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path().join("store"), Config::default())?;
    /// assert!(engine.recovery_report().created);
    ///
    /// // One engine per store (L1): a second open fails with a named error.
    /// let second = Engine::open(dir.path().join("store"), Config::default());
    /// assert!(matches!(second, Err(Error::StoreLocked { .. })));
    ///
    /// // No store is created where none is wanted.
    /// let config = Config { create_if_missing: false, ..Config::default() };
    /// let missing = Engine::open(dir.path().join("elsewhere"), config);
    /// assert!(matches!(missing, Err(Error::NotAStore { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Engine> {
        Engine::open_on(Arc::new(StdFs::new()), dir, config)
    }

    /// Opens (or creates) the store in `dir` on `vfs` (e.g. a [`crate::vfs::SimFs`] in tests).
    ///
    /// In order: checks `config` ([`Config::validate`]); takes the store's lock (L1,
    /// `Error::StoreLocked` if another engine holds it); recovers from the control file and the
    /// redo log (R1: every write whose `sync` returned is back; what it did is in
    /// [`Engine::recovery_report`]); removes what unfinished snapshots left; starts the
    /// background threads. Errors: `Error::InvalidArgument` for a bad config,
    /// `Error::NotAStore` for a directory that holds no store (with `create_if_missing` off) or
    /// files but no control file, `Error::PageSizeMismatch`, and corruption of the control file
    /// as `Error::Corrupted` or `Error::ChecksumMismatch` (a torn redo tail is cut, not an error).
    ///
    /// On a [`SimFs`](crate::vfs::SimFs), a power cut keeps exactly what was synced, and maybe
    /// more (a prefix of the writes, R1):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use deltasnap::vfs::{SimFs, Vfs};
    /// use deltasnap::{Config, Engine, PartitionId};
    ///
    /// let fs = SimFs::new();
    /// let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    /// let config = Config { background_checkpointer: false, ..Config::default() };
    /// let engine = Engine::open_on(Arc::clone(&vfs), "/store", config.clone())?;
    /// engine.create_partition(PartitionId(0))?;
    /// let page = engine.allocate_page(PartitionId(0))?;
    /// engine.write(page, 0, b"synced")?;
    /// engine.sync()?;
    /// engine.write(page, 0, b"maybe!")?;
    /// std::mem::forget(engine); // the process dies: no close
    /// fs.crash(7);
    ///
    /// let engine = Engine::open_on(vfs, "/store", config)?;
    /// let after = engine.read(page)?[..6].to_vec();
    /// assert!(after == b"synced" || after == b"maybe!");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_on(vfs: Arc<dyn Vfs>, dir: impl AsRef<Path>, config: Config) -> Result<Engine> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        // Before recovery reads a byte: a second engine must not replay, or later rewrite, a
        // store another one is changing.
        let lock = StoreLock::acquire(&vfs, &dir, config.create_if_missing)?;
        let (store, recovery) = recover(vfs, dir, config)?;
        let store = Arc::new(store);
        let engine = Engine {
            store,
            checkpointer: Mutex::new(None),
            wal_writer: Mutex::new(None),
            recovery,
            lock: Mutex::new(lock),
            calls: CallGate::new(),
            close_failure: Mutex::new(None),
        };
        if engine.store.config.background_checkpointer {
            // On an error, dropping `engine` stops and joins what was started.
            let thread_store = Arc::clone(&engine.store);
            *engine.wal_writer.lock() = Some(
                thread::Builder::new()
                    .name("deltasnap-wal-writer".into())
                    .spawn(move || {
                        // Not marked background: sync leaders wait for its writes (a commit's
                        // latency), so it must run as soon as its write returns.
                        thread_store.wal.run_write_behind()
                    })
                    .map_err(|e| Error::io("spawn redo log writer thread", &engine.store.dir, e))?,
            );
            let thread_store = Arc::clone(&engine.store);
            *engine.checkpointer.lock() = Some(
                thread::Builder::new()
                    .name("deltasnap-checkpointer".into())
                    .spawn(move || {
                        crate::sync::mark_background_thread();
                        checkpoint::run_thread(thread_store)
                    })
                    .map_err(|e| Error::io("spawn checkpointer thread", &engine.store.dir, e))?,
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
        &self.store.dir
    }

    /// The store's page size in bytes.
    pub fn page_size(&self) -> u32 {
        self.store.page_size as u32
    }

    /// Bytes of a page that applications can write (`page_size` minus the footer).
    pub fn payload_size(&self) -> usize {
        format::payload_size(self.store.page_size)
    }

    /// The current epoch (writes that start now get it or a later one).
    pub fn current_epoch(&self) -> Epoch {
        self.store.epochs.current_epoch()
    }

    /// Creates an empty partition.
    pub fn create_partition(&self, id: PartitionId) -> Result<()> {
        let _call = self.calls.enter()?;

        self.store.check_writable()?;
        self.store.create_partition(id)
    }

    /// Drops a partition. Its file is deleted after the next checkpoint (and after any snapshot
    /// copying it released it); that checkpoint also returns the memory its pages held.
    ///
    /// A `write` or `allocate_page` racing the drop is ordered wholly before it or wholly after
    /// it: before, it returns `Ok` (and its receipt's epoch is at most the drop's, so the write
    /// is part of the store until the drop); after, it returns `Error::NoSuchPartition` and
    /// logs nothing. No call returns `Ok` for data the drop already discarded.
    pub fn drop_partition(&self, id: PartitionId) -> Result<()> {
        let _call = self.calls.enter()?;

        self.store.check_writable()?;
        self.store.drop_partition(id)
    }

    /// The partitions that exist now, with their logical page counts.
    pub fn partitions(&self) -> Vec<(PartitionId, u32)> {
        self.store.live_partitions()
    }

    /// Allocates a zeroed page at the end of `partition`.
    pub fn allocate_page(&self, partition: PartitionId) -> Result<PageId> {
        let _call = self.calls.enter()?;

        self.store.check_writable()?;
        let partition = self.store.partition(partition)?;
        checkpoint::throttle(&self.store)?;
        self.store.allocate_page(&partition)
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
        let _call = self.calls.enter()?;

        self.store.check_writable()?;
        let target = self.store.write_target(page, offset, bytes.len())?;
        checkpoint::throttle(&self.store)?;
        self.store.write(target, bytes)
    }

    /// Reads the page's payload (`payload_size()` bytes): the latest write to each byte, synced
    /// or not; a page allocated and never written reads as zeros. Errors:
    /// `Error::NoSuchPartition`, `Error::PageOutOfRange` for a page not allocated, and, when the
    /// page had to be read from its partition file, `Error::Io`, or `Error::Corrupted` or
    /// `Error::ChecksumMismatch` if it does not verify there.
    ///
    /// ```
    /// use deltasnap::{Config, Engine, Error, PageId, PartitionId};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path(), Config::default())?;
    /// engine.create_partition(PartitionId(0))?;
    /// let page = engine.allocate_page(PartitionId(0))?;
    /// assert_eq!(engine.read(page)?, vec![0u8; engine.payload_size()]);
    /// engine.write(page, 3, b"abc")?;
    /// assert_eq!(&engine.read(page)?[..6], b"\0\0\0abc");
    /// assert!(matches!(
    ///     engine.read(PageId::new(PartitionId(9), 0)),
    ///     Err(Error::NoSuchPartition(_))
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read(&self, page: PageId) -> Result<Vec<u8>> {
        let _call = self.calls.enter()?;

        self.store.check_open()?;
        self.store.read(page)
    }

    /// Makes every write that returned before this call durable (group commit: concurrent
    /// callers share one fsync). Returns the durable LSN: every write whose receipt's `lsn` is
    /// below it survives a crash (R1). Errors: `Error::WalFailed` once a redo log append or
    /// fsync failed (the log never retries: reopen), `Error::Closed`.
    ///
    /// ```
    /// use deltasnap::{Config, Engine, PartitionId};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path(), Config::default())?;
    /// engine.create_partition(PartitionId(0))?;
    /// let page = engine.allocate_page(PartitionId(0))?;
    /// let receipt = engine.write(page, 0, b"durable")?;
    /// let durable_lsn = engine.sync()?;
    /// assert!(receipt.lsn < durable_lsn);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&self) -> Result<Lsn> {
        let _call = self.calls.enter()?;

        self.store.check_open()?;
        self.store.wal.sync()
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
        let _call = self.calls.enter()?;

        self.store.check_writable()?;
        if self.checkpointer.lock().is_none() {
            return checkpoint::run(&self.store, Trigger::OnDemand);
        }
        let mut schedule = self.store.schedule.lock();
        let target = schedule.started_run + 1;
        schedule.requested_run = schedule.requested_run.max(target);
        self.store.schedule_changed.notify_all();
        while schedule.completed_run < target {
            if let Some(reason) = self.store.poisoned() {
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
                .store
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
        let _call = self.calls.enter()?;

        self.store.check_writable()?;
        if value.len() > METADATA_VALUE_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "metadata value of {} bytes is over the limit of {METADATA_VALUE_BYTES_MAX}",
                value.len()
            )));
        }
        self.store.metadata_set(key, Some(value.to_vec()))
    }

    /// Deletes metadata `key` (logged like a put; deleting an absent key is not an error).
    /// `Error::InvalidArgument` for a key outside `1 ..=` [`METADATA_KEY_BYTES_MAX`](crate::METADATA_KEY_BYTES_MAX)
    /// bytes. Example: [`Engine::metadata_put`].
    pub fn metadata_delete(&self, key: &[u8]) -> Result<WriteReceipt> {
        let _call = self.calls.enter()?;

        self.store.check_writable()?;
        self.store.metadata_set(key, None)
    }

    /// The value of metadata `key` now (the latest put, synced or not); `None` if absent.
    /// Example: [`Engine::metadata_put`].
    pub fn metadata_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _call = self.calls.enter()?;

        self.store.check_open()?;
        Ok(self.store.metadata_get(key))
    }

    /// The whole metadata map as it is now, in key order.
    ///
    /// ```
    /// use deltasnap::{Config, Engine};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path(), Config::default())?;
    /// engine.metadata_put(b"b", b"2")?;
    /// engine.metadata_put(b"a", b"1")?;
    /// let keys: Vec<Vec<u8>> = engine.metadata()?.into_keys().collect();
    /// assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metadata(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        let _call = self.calls.enter()?;

        self.store.check_open()?;
        Ok(self.store.metadata_now())
    }

    /// Running and recently ended checkpoint and snapshot jobs.
    pub fn jobs(&self) -> Vec<JobStatus> {
        self.store.jobs.list()
    }

    /// Why the engine refuses writes, if it does (a failed checkpoint).
    pub fn poisoned(&self) -> Option<String> {
        self.store.poisoned()
    }

    /// Bytes of page images in memory now, and of those the dirty ones.
    pub fn memory_usage(&self) -> (u64, u64) {
        (self.store.budget.resident(), self.store.budget.dirty())
    }

    /// What the engine did since it was opened.
    pub fn stats(&self) -> EngineStats {
        self.store.stats()
    }

    /// Registers a checkpoint listener; it sees every checkpoint that begins after this returns.
    /// Returns the id [`Engine::remove_checkpoint_listener`] takes. The listener runs on the
    /// thread that runs the checkpoint, inside it: it must not block for long, and a panic in it
    /// poisons the engine (`Error::Poisoned` naming the panic).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use deltasnap::{CheckpointCut, CheckpointListener, Config, Engine, Epoch, PartitionId};
    ///
    /// #[derive(Default)]
    /// struct Ended(Mutex<Vec<Epoch>>);
    ///
    /// impl CheckpointListener for Ended {
    ///     fn on_checkpoint_begin(&self, cut: &CheckpointCut) {
    ///         assert!(cut.partitions.iter().any(|p| p.id == PartitionId(0)));
    ///     }
    ///     fn on_checkpoint_end(&self, epoch: Epoch) {
    ///         self.0.lock().unwrap().push(epoch);
    ///     }
    /// }
    ///
    /// let dir = tempfile::tempdir()?;
    /// let engine = Engine::open(dir.path(), Config::default())?;
    /// engine.create_partition(PartitionId(0))?;
    /// let ended = Arc::new(Ended::default());
    /// let id = engine.add_checkpoint_listener(ended.clone());
    /// let receipt = engine.write(engine.allocate_page(PartitionId(0))?, 0, b"seen")?;
    /// engine.checkpoint()?;
    /// // The end is reported once the checkpoint is durable, before `checkpoint` returns.
    /// assert!(ended.0.lock().unwrap().iter().any(|&epoch| epoch >= receipt.epoch));
    /// engine.remove_checkpoint_listener(id);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_checkpoint_listener(&self, listener: Arc<dyn CheckpointListener>) -> u64 {
        self.store.add_listener(listener)
    }

    /// Removes a listener; a checkpoint already running keeps calling it until it ends.
    pub fn remove_checkpoint_listener(&self, id: u64) {
        self.store.remove_listener(id)
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
        let _call = self.calls.enter()?;

        self.store.check_writable()?;
        task::start(Arc::clone(&self.store) as Arc<dyn SnapshotHost>, options)
    }

    /// Refuses new calls and waits for the ones in flight, cancels a running snapshot (its `wait`
    /// returns `Error::Cancelled`) and waits for it to clean up, stops the background threads,
    /// makes every write durable with a final checkpoint, and closes the store (releasing its
    /// lock). A second `close` returns what the first returned: `Ok` only if every write was
    /// made durable. Later calls return `Error::Closed`; a `checkpoint()` waiting for a run
    /// the checkpointer had not started returns `Error::Closed` too (no checkpoint runs after
    /// the final one). Dropping an engine closes it too (logging any error instead of
    /// returning it).
    pub fn close(&self) -> Result<()> {
        // One close at a time: a second caller waits for the first, then finds the engine closed
        // (and never sees the store unlocked while the first still writes).
        let mut lock = self.lock.lock();
        if self.store.is_closed() {
            return match self.close_failure.lock().clone() {
                None => Ok(()),
                Some(reason) => Err(Error::Poisoned(reason)),
            };
        }
        {
            let mut schedule = self.store.schedule.lock();
            schedule.shutdown = true;
        }
        self.store.schedule_changed.notify_all();
        // No call logs a record after the final checkpoint: later calls are refused, and the
        // ones in flight (a throttled writer is released by the shutdown above; a `checkpoint()`
        // is served or refused) return first.
        self.calls.close_and_drain();
        // A running snapshot writes in the store (its marker) and in its target: it ends before
        // the lock is released. Its `wait` returns `Error::Cancelled`.
        self.store.cancel_running_snapshot_and_wait();
        if let Some(handle) = self.checkpointer.lock().take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.wal_writer.lock().take() {
            self.store.wal.stop_write_behind();
            let _ = handle.join();
        }
        let result = match self.store.poisoned() {
            Some(reason) => Err(Error::Poisoned(reason)),
            None => self.store.wal.sync().and_then(|_| {
                match checkpoint::run(&self.store, Trigger::Close) {
                    // A concurrent `close` ran the final checkpoint.
                    Err(Error::Closed) | Ok(_) => Ok(()),
                    Err(error) => Err(error),
                }
            }),
        };
        if let Err(error) = &result {
            *self.close_failure.lock() = Some(match error {
                Error::Poisoned(reason) => reason.clone(),
                other => format!("close failed: {other}"),
            });
        }
        self.store.mark_closed();
        // The last byte this engine writes is behind it: another engine may open the store.
        drop(lock.take());
        result
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.store.is_closed() {
            return; // a failed close already reported its error to its caller
        }
        if let Err(error) = self.close() {
            tracing::warn!(dir = %self.store.dir.display(), %error, "closing engine on drop failed");
        }
    }
}
