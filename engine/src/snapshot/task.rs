//! The snapshot task: the engine's I/O around [`protocol::PartitionSnapshot`].
//!
//! Three parties, as in DESIGN §4:
//!
//! - the **write hook** ([`SnapshotListener`], a [`CheckpointListener`] called by the checkpointer):
//!   at the cut of the first checkpoint that begins after the snapshot was requested (S2) it
//!   creates one protocol state and one delta file per partition; before every partition write it
//!   asks the protocol what to capture, appends it to the delta, and returns a guard that ends the
//!   hook call (`page_write_done`) only after the checkpointer's file write returned. While a hook
//!   call is in flight the protocol refuses every other transition, so the copier and the merge
//!   wait for it (the *hook lock* of the protocol's locking contract: [`HookCell`]);
//! - the **copier** (the task thread): copies `[0, copy_end)` of each partition file with
//!   `copy_file_range`, announcing every chunk before reading it and starting the device's
//!   writeback of every chunk once copied (so the final fsync waits for little), rate-limited on
//!   request;
//! - the **merge** (the task thread): once the copy of a partition is done *and* `S` has ended
//!   (S5, either order), closes the partition's hook (S4), writes the delta's pages over the copy,
//!   reads every page back to check it and record its crc.
//!
//! Then **publish**: fsync, manifest, rename of the temporary directory (format.md §5). Any error
//! or a cancel closes every hook, removes the temporary directory and fails the snapshot, never
//! the checkpoint or the writers.
//!
//! # Bounds
//!
//! - **Options** are checked up front, before anything is created ([`SnapshotOptions`] documents
//!   each field's range); a value out of range is `Error::InvalidArgument` naming the field.
//! - **Merge memory**: the delta is streamed in batches of at most
//!   [`MERGE_BUFFER_BYTES_MAX`](super::MERGE_BUFFER_BYTES_MAX) bytes and each entry written at
//!   its page's place as it comes (each index appears once, so the order of the writes does not
//!   change the result), plus one bit per page of the partition to refuse a page captured twice
//!   (`pages_at_cut / 8` bytes: the protocol's own capture bitset is the same size, so the merge
//!   adds no new order of growth) and the read-back buffer of `MERGE_READ_BYTES`. The manifest's
//!   page crcs (4 bytes a page) are the format's, not the merge's. The peak of the delta buffer
//!   is reported in [`SnapshotProgress::merge_buffer_bytes_peak`].
//! - **Cancel latency**: the rate limiter waits on the task's condition variable, which `cancel`
//!   and every failure notify, so a cancel ends the wait at once rather than after
//!   `chunk_bytes / rate` seconds; the hooks are closed by `cancel` itself.
//! - **Durable directories**: the target directory and its missing parents are created with
//!   their parents fsynced (`create_dir_all_durable`), so a published snapshot cannot vanish
//!   with a directory entry that was never made durable. (The temporary directory's entry is made
//!   durable under its final name, by the publish's rename and fsync of the target.)
//! - **Publish is all or nothing** for the caller: if a step after the rename fails, the final
//!   name is taken back (renamed back to the temporary name, which the failure cleanup or the
//!   next open removes) before `wait` reports the error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bugs::{self, Bug};
use crate::checkpoint::{self, CheckpointCut, CheckpointListener, Trigger, WriteGuard};
use crate::engine::Inner;
use crate::error::{Error, IoContext, Result};
use crate::format;
use crate::jobs::{JobKind, JobStage};
use crate::layout::{self, DELTAS_DIR, PARTITIONS_DIR, SNAPSHOTS_TMP_DIR};
use crate::snapshot::create_dir_all_durable;
use crate::snapshot::delta::DeltaFile;
use crate::snapshot::hook::{HookCell, HookState};
use crate::snapshot::manifest::{
    hex, partition_file_name, validate_snapshot_name, Manifest, ManifestMetadata,
    ManifestPartition, MANIFEST_FILE_NAME, MANIFEST_FORMAT_VERSION,
};
use crate::snapshot::protocol::{Capture, DeltaPolicy, PartitionSnapshot};
use crate::snapshot::trace;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{thread, Arc, Condvar, Mutex, RwLock};
use crate::types::{Epoch, Lsn, PageId, PartitionId};
use crate::vfs::{OpenMode, Vfs, VfsFile};

/// Bytes the merge reads back at a time to check the merged pages.
const MERGE_READ_BYTES: u64 = 1 << 20;

/// Called by the copier before it announces each chunk, with the partition and the chunk's first
/// page. Tests use it to hold the copier at a chosen point and force a race order (S5).
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
    pub delta_policy: DeltaPolicy,
    /// Bytes per second the copier may copy; `None`: as fast as the disk goes. `Some(r)` needs
    /// `r >= RATE_LIMIT_BYTES_PER_SEC_MIN` (`Some(0)` is refused: use `None` for no limit).
    pub rate_limit_bytes_per_sec: Option<u64>,
    /// Bytes the copier announces and copies at a time: at least one page of the store, at most
    /// [`CHUNK_BYTES_MAX`]; rounded down to whole pages.
    pub chunk_bytes: u64,
    /// Test hook, see [`CopyGate`].
    #[doc(hidden)]
    pub copy_gate: Option<CopyGate>,
}

impl SnapshotOptions {
    /// Checks every field against its documented range for a store of `page_size`-byte pages.
    /// Returns the chunk in pages.
    fn validate(&self, page_size: u32) -> Result<u32> {
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

    pub fn new(target_dir: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        SnapshotOptions {
            target_dir: target_dir.into(),
            name: name.into(),
            delta_policy: DeltaPolicy::Full,
            rate_limit_bytes_per_sec: None,
            chunk_bytes: 1 << 20,
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

/// One partition's hook: the protocol state and the I/O it steers, behind the hook lock.
type PartitionHook = HookCell<PartitionIo>;

/// What a partition's hook lock guards besides the protocol state.
struct PartitionIo {
    delta: DeltaFile,
    source: Arc<dyn VfsFile>,
    source_path: PathBuf,
}

/// What the cut fixed.
#[derive(Clone)]
struct CutInfo {
    epoch: Epoch,
    lsn: Lsn,
    metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Default)]
struct TaskState {
    /// The task has ended (published, failed or cancelled): a checkpoint that copied its listener
    /// list earlier may still call the hook; it must find nothing to do.
    ended: bool,
    cut: Option<CutInfo>,
    checkpoint_ended: bool,
    failure: Option<String>,
    cancelled: bool,
}

/// State shared by the hook (checkpointer thread), the task thread and the handle.
pub(crate) struct Shared {
    vfs: Arc<dyn Vfs>,
    page_size: u32,
    policy: DeltaPolicy,
    tmp_dir: PathBuf,
    hooks: RwLock<BTreeMap<PartitionId, Arc<PartitionHook>>>,
    state: Mutex<TaskState>,
    state_changed: Condvar,
    stage: Mutex<JobStage>,
    bytes_copied: AtomicU64,
    bytes_total: AtomicU64,
    delta_pages: AtomicU64,
    cut_epoch: AtomicU64,
    copy_done: AtomicBool,
    merge_buffer_bytes_peak: AtomicU64,
    cancel_requested: AtomicBool,
    finished: AtomicBool,
}

impl Shared {
    fn fail(&self, reason: String) {
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
    fn close_all_hooks(&self) {
        for hook in self.hooks.read().values() {
            let _already_closed =
                hook.update(|state| state.protocol.cancel().inspect(|()| trace::cancelled()));
        }
    }

    /// Writes out the delta appends the hook buffered during checkpoint `epoch` (delta.rs), in
    /// the checkpointer: a write error fails the snapshot, as an unbuffered append's would have.
    fn flush_deltas(&self, epoch: Epoch) {
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
    fn check(&self) -> Result<()> {
        if self.cancel_requested.load(Ordering::Acquire) {
            return Err(Error::Cancelled);
        }
        match &self.state.lock().failure {
            Some(reason) => Err(Error::InvalidSnapshot(reason.clone())),
            None => Ok(()),
        }
    }

    fn set_stage(&self, stage: JobStage) {
        *self.stage.lock() = stage;
    }
}

/// The write hook, registered with the engine for the snapshot's lifetime.
pub(crate) struct SnapshotListener(Arc<Shared>);

impl CheckpointListener for SnapshotListener {
    fn on_checkpoint_begin(&self, cut: &CheckpointCut) {
        let shared = &self.0;
        // Held through the install, so that the task cannot end (and remove the temporary
        // directory) while hooks are being installed into it.
        let mut task_state = shared.state.lock();
        if task_state.cut.is_some()
            || task_state.ended
            || task_state.failure.is_some()
            || task_state.cancelled
            || shared.cancel_requested.load(Ordering::Acquire)
        {
            trace::checkpoint_begin(cut.epoch);
            return; // a later checkpoint (the cut is fixed already), or the task is over
        }
        let install = || -> Result<BTreeMap<PartitionId, Arc<PartitionHook>>> {
            let mut hooks = BTreeMap::new();
            for partition in &cut.partitions {
                let bytes_on_disk = partition
                    .file
                    .len()
                    .ctx("stat partition file", &partition.path)?;
                let protocol = PartitionSnapshot::at_cut(
                    shared.policy,
                    partition.page_count,
                    bytes_on_disk,
                    cut.page_size,
                )
                .map_err(|e| Error::Corrupted {
                    file: partition.path.clone(),
                    page: None,
                    reason: format!("cannot snapshot this partition: {e}"),
                })?;
                let delta_path = delta_path(&shared.tmp_dir, partition.id);
                let delta = DeltaFile::create(
                    &shared.vfs,
                    &delta_path,
                    cut.page_size,
                    partition.id,
                    cut.epoch,
                )?;
                hooks.insert(
                    partition.id,
                    Arc::new(PartitionHook::new(
                        protocol,
                        PartitionIo {
                            delta,
                            source: Arc::clone(&partition.file),
                            source_path: partition.path.clone(),
                        },
                    )),
                );
            }
            Ok(hooks)
        };
        match install() {
            Ok(hooks) => {
                let total: u64 = hooks
                    .values()
                    .map(|h| h.lock().protocol.copy_end() as u64 * cut.page_size as u64)
                    .sum();
                trace::cut(cut);
                *shared.hooks.write() = hooks;
                shared.bytes_total.store(total, Ordering::Release);
                shared.cut_epoch.store(cut.epoch, Ordering::Release);
                task_state.cut = Some(CutInfo {
                    epoch: cut.epoch,
                    lsn: cut.replay_start_lsn,
                    metadata: cut.metadata.clone(),
                });
                drop(task_state);
                tracing::info!(
                    epoch = cut.epoch,
                    partitions = cut.partitions.len(),
                    "snapshot cut taken"
                );
            }
            Err(error) => {
                // No hook was installed: the snapshot fails, the checkpoint goes on untouched.
                task_state.cut = Some(CutInfo {
                    epoch: cut.epoch,
                    lsn: cut.replay_start_lsn,
                    metadata: BTreeMap::new(),
                });
                drop(task_state);
                shared.fail(format!(
                    "installing the snapshot hooks at the cut failed: {error}"
                ));
            }
        }
        shared.state_changed.notify_all();
    }

    fn before_page_write(&self, _epoch: Epoch, page: PageId, image: &[u8]) -> Option<WriteGuard> {
        let shared = &self.0;
        let hook = Arc::clone(shared.hooks.read().get(&page.partition)?);
        let decided = hook.before_page_write(page.index, |capture, state| {
            trace::hook_decided(page, capture, image);
            let io = &mut state.io;
            let captured = match capture {
                Capture::NewImage if bugs::active(Bug::SkipNewImageCapture) => Ok(false),
                Capture::OldImageFromFile if bugs::active(Bug::SkipOldImageCapture) => Ok(false),
                Capture::NewImage => io
                    .delta
                    .append(page.index, image)
                    .inspect(|()| trace::delta_appended(page, image))
                    .map(|_| true),
                Capture::OldImageFromFile => {
                    let mut old = vec![0u8; shared.page_size as usize];
                    let offset = page.index as u64 * shared.page_size as u64;
                    io.source
                        .read_exact_at(&mut old, offset)
                        .ctx("read page for the snapshot delta", &io.source_path)
                        .and_then(|_| {
                            format::verify_page(&old, page.index, &io.source_path).map(|_| ())
                        })
                        .and_then(|_| io.delta.append(page.index, &old))
                        .inspect(|()| trace::delta_appended(page, &old))
                        .map(|_| true)
                }
                Capture::Nothing(_) | Capture::Closed => Ok(false),
            };
            match captured {
                Ok(true) => {
                    shared.delta_pages.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Ok(false) => Ok(()),
                Err(error) => {
                    // The snapshot fails; the checkpoint's own write goes ahead (contract 4).
                    let _ = state.protocol.cancel().inspect(|()| trace::cancelled());
                    Err(error)
                }
            }
        });
        match decided {
            Ok((call, Ok(()))) => Some(Box::new(call)),
            Ok((call, Err(error))) => {
                shared.fail(format!(
                    "capturing page {page} into the delta failed: {error}"
                ));
                Some(Box::new(call))
            }
            Err(error) => {
                shared.fail(format!(
                    "hook for page {page} refused by the protocol: {error}"
                ));
                None
            }
        }
    }

    fn on_checkpoint_end(&self, epoch: Epoch) {
        trace::checkpoint_end(epoch);
        let shared = &self.0;
        shared.flush_deltas(epoch);
        if shared
            .state
            .lock()
            .cut
            .as_ref()
            .is_none_or(|c| c.epoch != epoch)
        {
            return;
        }
        // The hooks learn that S ended before the task does: the task merges as soon as it sees
        // `checkpoint_ended` (it also wakes on a timeout, without a notify), and a hook that had
        // not been told yet would refuse the merge's `close` and fail the snapshot.
        for hook in shared.hooks.read().values() {
            // Closed (failed or cancelled) hooks refuse; nothing to do for them.
            let _ = hook.update(|state| state.protocol.checkpoint_ended());
        }
        shared.state.lock().checkpoint_ended = true;
        shared.state_changed.notify_all();
    }

    fn on_checkpoint_failed(&self, epoch: Epoch, error: &Error) {
        self.0.fail(format!("checkpoint {epoch} failed: {error}"));
    }
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
        self.shared.cancel_requested.store(true, Ordering::Release);
        // Through the state lock: a task thread that checked the flag under it is now waiting,
        // so the notify reaches it (no lost wakeup).
        drop(self.shared.state.lock());
        self.shared.state_changed.notify_all();
        self.shared.close_all_hooks();
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

/// The delta file of partition `id` in the temporary directory `tmp_dir` (format.md §5).
fn delta_path(tmp_dir: &Path, id: PartitionId) -> PathBuf {
    layout::snapshot_delta_path(tmp_dir, id)
}

fn marker_path(inner: &Inner, name: &str) -> PathBuf {
    layout::snapshot_marker_path(&inner.dir, name)
}

/// Starts a snapshot (see `Engine::snapshot`).
pub(crate) fn start(inner: &Arc<Inner>, mut options: SnapshotOptions) -> Result<SnapshotHandle> {
    let chunk_pages = options.validate(inner.page_size as u32)?;
    options.target_dir = std::path::absolute(&options.target_dir).map_err(|e| {
        Error::io(
            "resolve the snapshot target directory",
            &options.target_dir,
            e,
        )
    })?;
    let vfs = Arc::clone(&inner.vfs);
    let final_dir = options.target_dir.join(&options.name);
    if vfs
        .exists(&final_dir)
        .ctx("stat snapshot directory", &final_dir)?
    {
        return Err(Error::InvalidArgument(format!(
            "{} already exists",
            final_dir.display()
        )));
    }
    let tmp_dir = layout::snapshot_tmp_dir(&options.target_dir, &options.name);
    let claim = inner.claim_snapshot_slot(&options.name)?;
    // From here on, `claim` releases the slot if we return early.
    let setup = || -> Result<()> {
        if vfs.exists(&tmp_dir).ctx("stat", &tmp_dir)? {
            return Err(Error::InvalidArgument(format!(
                "{} exists: another snapshot of this name is being made, or one crashed and its store was not reopened",
                tmp_dir.display()
            )));
        }
        // 1. The marker first, so that a crash from here on leaves nothing `open` cannot clean.
        let markers = inner.dir.join(SNAPSHOTS_TMP_DIR);
        vfs.create_dir_all(&markers)
            .ctx("create snapshot marker directory", &markers)?;
        let marker = marker_path(inner, &options.name);
        let file = vfs
            .open(&marker, OpenMode::Create)
            .ctx("create snapshot marker", &marker)?;
        file.set_len(0).ctx("write snapshot marker", &marker)?;
        file.write_all_at(tmp_dir.to_string_lossy().as_bytes(), 0)
            .ctx("write snapshot marker", &marker)?;
        file.sync_all().ctx("fsync snapshot marker", &marker)?;
        vfs.sync_dir(&markers)
            .ctx("fsync snapshot marker directory", &markers)?;
        if let Some(parent) = markers.parent() {
            vfs.sync_dir(parent).ctx("fsync store directory", parent)?;
        }
        // 2. The target directory and its parents if missing, each new entry made durable, or
        //    a published snapshot could vanish with them. (The temporary directory's own entry
        //    needs no fsync: the publish renames it and fsyncs the target.)
        create_dir_all_durable(&vfs, &options.target_dir)?;
        // 3. The temporary directory.
        for sub in [PARTITIONS_DIR, DELTAS_DIR] {
            let path = tmp_dir.join(sub);
            vfs.create_dir_all(&path)
                .ctx("create snapshot directory", &path)?;
        }
        Ok(())
    };
    if let Err(error) = setup() {
        let _ = vfs.remove_dir_all(&tmp_dir);
        let _ = vfs.remove_file(&marker_path(inner, &options.name));
        drop(claim);
        return Err(error);
    }

    let shared = Arc::new(Shared {
        vfs,
        page_size: inner.page_size as u32,
        policy: options.delta_policy,
        tmp_dir: tmp_dir.clone(),
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
    });
    let listener_id = inner.add_listener(Arc::new(SnapshotListener(Arc::clone(&shared))));
    let job = inner.jobs.start(JobKind::Snapshot, JobStage::Waiting);
    let task = Task {
        inner: Arc::clone(inner),
        shared: Arc::clone(&shared),
        options,
        chunk_pages,
        final_dir,
        tmp_dir,
        job,
        listener_id,
        claim: Some(claim),
    };
    let thread = thread::Builder::new()
        .name("deltasnap-snapshot".into())
        .spawn(move || {
            crate::sync::mark_background_thread();
            task.run()
        })
        .map_err(|e| Error::io("spawn snapshot thread", &inner.dir, e))?;
    Ok(SnapshotHandle {
        shared,
        job,
        thread: Mutex::new(Some(thread)),
    })
}

/// The slot "one snapshot at a time"; dropping it frees the slot.
pub(crate) struct SnapshotClaim {
    inner: Arc<Inner>,
}

impl SnapshotClaim {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        SnapshotClaim { inner }
    }
}

impl Drop for SnapshotClaim {
    fn drop(&mut self) {
        self.inner.release_snapshot_slot();
    }
}

struct Task {
    inner: Arc<Inner>,
    shared: Arc<Shared>,
    options: SnapshotOptions,
    /// `options.chunk_bytes` in pages (checked at start).
    chunk_pages: u32,
    final_dir: PathBuf,
    tmp_dir: PathBuf,
    job: u64,
    listener_id: u64,
    claim: Option<SnapshotClaim>,
}

impl Task {
    fn run(mut self) -> Result<Manifest> {
        let started = Instant::now();
        let result = self.make();
        // Whatever happened: no more hook installs or calls, no more holds.
        self.shared.state.lock().ended = true;
        self.shared.close_all_hooks();
        self.inner.remove_listener(self.listener_id);
        let held: Vec<PartitionId> = self.shared.hooks.read().keys().copied().collect();
        self.inner.release_partitions(&held);
        let vfs = &self.shared.vfs;
        let mut tmp_gone = true;
        if result.is_err() && vfs.exists(&self.tmp_dir).unwrap_or(true) {
            // The removal must be durable before the marker goes: otherwise a crash can bring
            // the directory back with no marker left to remove it.
            let removed = vfs
                .remove_dir_all(&self.tmp_dir)
                .and_then(|_| vfs.sync_dir(&self.options.target_dir));
            if let Err(error) = removed {
                tmp_gone = false;
                tracing::warn!(dir = %self.tmp_dir.display(), %error, "could not remove the snapshot's temporary directory; the next open removes it");
            }
        }
        // The marker is what lets the next open remove the temporary directory: keep it until
        // the directory is durably gone.
        if tmp_gone {
            let marker = marker_path(&self.inner, &self.options.name);
            let marker_removed = vfs
                .remove_file(&marker)
                .and_then(|_| vfs.sync_dir(marker.parent().expect("in the store")));
            if let Err(error) = marker_removed {
                tracing::warn!(marker = %marker.display(), %error, "could not remove the snapshot marker; the next open removes it");
            }
        }
        self.claim.take();
        let duration = started.elapsed();
        match &result {
            Ok(manifest) => {
                self.shared.set_stage(JobStage::Complete);
                self.inner.jobs.finish(self.job, None);
                metrics::counter!("deltasnap_snapshots_total").increment(1);
                metrics::histogram!("deltasnap_snapshot_seconds").record(duration.as_secs_f64());
                tracing::info!(name = %manifest.name, cut_epoch = manifest.cut_epoch, delta_pages = manifest.delta_pages, ?duration, "snapshot published");
            }
            Err(error) => {
                self.shared.set_stage(JobStage::Failed);
                self.inner.jobs.finish(self.job, Some(error.to_string()));
                metrics::counter!("deltasnap_snapshots_failed_total").increment(1);
            }
        }
        self.shared.finished.store(true, Ordering::Release);
        result
    }

    fn stage(&self, stage: JobStage) {
        self.shared.set_stage(stage);
        let copied = self.shared.bytes_copied.load(Ordering::Relaxed);
        let total = self.shared.bytes_total.load(Ordering::Relaxed);
        let delta = self.shared.delta_pages.load(Ordering::Relaxed);
        self.inner.jobs.update(self.job, |s| {
            s.stage = stage;
            s.bytes_written = copied;
            s.bytes_total = total;
            s.delta_pages = delta;
        });
    }

    fn make(&mut self) -> Result<Manifest> {
        // The cut: the first checkpoint that begins from now on. It must run even if nothing
        // changed since the last one.
        self.stage(JobStage::Waiting);
        let runner = self.inner.request_snapshot_checkpoint()?;
        let cut = self.wait_for(|state| state.cut.clone())?;
        self.inner.jobs.update(self.job, |s| {
            s.epoch = Some(cut.epoch);
            s.redo_lsn = Some(cut.lsn);
        });
        let hooks: Vec<(PartitionId, Arc<PartitionHook>)> = self
            .shared
            .hooks
            .read()
            .iter()
            .map(|(id, h)| (*id, Arc::clone(h)))
            .collect();
        let ids: Vec<PartitionId> = hooks.iter().map(|(id, _)| *id).collect();
        self.inner.hold_partitions(&ids);
        self.shared.check()?;

        // Copy.
        self.stage(JobStage::Copying);
        let copy_started = Instant::now();
        for (id, hook) in &hooks {
            self.copy_partition(*id, hook, copy_started)?;
        }

        self.shared.copy_done.store(true, Ordering::Release);
        tracing::debug!("snapshot copy done");

        // Merge, once S has ended (S5: possibly long before or long after the copy finished).
        self.wait_for(|state| state.checkpoint_ended.then_some(()))?;
        if let Some(runner) = runner {
            let _ = runner.join();
        }
        self.stage(JobStage::Merging);
        let mut partitions = Vec::new();
        let mut delta_pages = 0u64;
        for (id, hook) in &hooks {
            let (partition, merged) = self.merge_partition(*id, hook)?;
            delta_pages += merged;
            partitions.push(partition);
        }

        // Publish.
        self.stage(JobStage::Publishing);
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            name: self.options.name.clone(),
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            cut_epoch: cut.epoch,
            cut_lsn: cut.lsn,
            page_size: self.shared.page_size,
            delta_policy: self.options.delta_policy,
            delta_pages,
            partitions,
            metadata: cut
                .metadata
                .iter()
                .map(|(k, v)| ManifestMetadata {
                    key_hex: hex(k),
                    value_hex: hex(v),
                })
                .collect(),
        };
        self.publish(&manifest)?;
        Ok(manifest)
    }

    /// Waits until `ready` returns a value, the snapshot fails, or it is cancelled.
    fn wait_for<T>(&self, ready: impl Fn(&TaskState) -> Option<T>) -> Result<T> {
        let mut state = self.shared.state.lock();
        loop {
            if self.shared.cancel_requested.load(Ordering::Acquire) || state.cancelled {
                return Err(Error::Cancelled);
            }
            if let Some(reason) = &state.failure {
                return Err(Error::InvalidSnapshot(reason.clone()));
            }
            if let Some(value) = ready(&state) {
                return Ok(value);
            }
            if let Some(reason) = self.inner.poisoned() {
                return Err(Error::Poisoned(reason));
            }
            if self.inner.is_closed() {
                return Err(Error::Closed);
            }
            state = self
                .shared
                .state_changed
                .wait_timeout(state, Duration::from_millis(50))
                .0;
        }
    }

    /// The rate limiter's wait: until `deadline`, or until the snapshot is cancelled or fails
    /// (both notify `state_changed` through the state lock, so neither is missed).
    fn pause_until(&self, deadline: Instant) -> Result<()> {
        if bugs::active(Bug::CancelWaitsRateSleep) {
            if let Some(ahead) = deadline.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
            return Ok(());
        }
        let mut state = self.shared.state.lock();
        loop {
            if self.shared.cancel_requested.load(Ordering::Acquire) || state.cancelled {
                return Err(Error::Cancelled);
            }
            if let Some(reason) = &state.failure {
                return Err(Error::InvalidSnapshot(reason.clone()));
            }
            let Some(ahead) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(());
            };
            state = self.shared.state_changed.wait_timeout(state, ahead).0;
        }
    }

    /// Runs `step` on the hook's state once no hook call is in flight (the hook lock).
    fn with_hook<T>(
        &self,
        hook: &PartitionHook,
        step: impl FnOnce(
            &mut HookState<PartitionIo>,
        ) -> std::result::Result<T, crate::snapshot::protocol::ProtocolError>,
    ) -> Result<T> {
        hook.when_idle(step).map_err(|error| {
            // Closed after a failure or cancel: report that cause rather than the refusal.
            self.shared.check().err().unwrap_or_else(|| {
                Error::InvalidSnapshot(format!("snapshot protocol refused a step: {error}"))
            })
        })
    }

    fn copy_partition(
        &self,
        id: PartitionId,
        hook: &PartitionHook,
        copy_started: Instant,
    ) -> Result<()> {
        let page_size = self.shared.page_size as u64;
        let (source, source_path, copy_end) = {
            let state = hook.lock();
            (
                Arc::clone(&state.io.source),
                state.io.source_path.clone(),
                state.protocol.copy_end(),
            )
        };
        let target_path = self.tmp_dir.join(partition_file_name(id.0));
        let target = self
            .shared
            .vfs
            .open(&target_path, OpenMode::CreateNew)
            .ctx("create snapshot partition file", &target_path)?;
        let chunk_pages = self.chunk_pages;
        let mut copied_end = 0u32;
        while copied_end < copy_end {
            self.shared.check()?;
            if let Some(gate) = &self.options.copy_gate {
                gate(id, copied_end);
            }
            let reading_end = copied_end.saturating_add(chunk_pages).min(copy_end);
            self.with_hook(hook, |s| {
                s.protocol
                    .announce(reading_end)
                    .inspect(|()| trace::announce(id, reading_end))
            })?;
            let offset = copied_end as u64 * page_size;
            let len = (reading_end - copied_end) as u64 * page_size;
            let copied = source
                .copy_to(offset, target.as_ref(), offset, len)
                .ctx("copy partition file", &source_path)?;
            if copied != len {
                return Err(Error::Corrupted {
                    file: source_path.clone(),
                    page: Some((offset + copied) / page_size),
                    reason: format!(
                        "partition file ended during the copy ({copied} of {len} bytes)"
                    ),
                });
            }
            // The device writes this chunk while the next is copied, so the merge's fsync finds
            // the copy mostly on disk already (BENCHMARKS.md: the fsync was a third of the
            // snapshot's time when it found 1 GiB dirty).
            target
                .start_writeback(offset, len)
                .ctx("start writeback of snapshot partition file", &target_path)?;
            trace::chunk_read(
                id,
                target.as_ref(),
                copied_end,
                reading_end,
                self.shared.page_size,
            );
            self.with_hook(hook, |s| {
                s.protocol
                    .chunk_copied(reading_end)
                    .inspect(|()| trace::chunk_copied(id, reading_end))
            })?;
            copied_end = reading_end;
            let total_copied = self.shared.bytes_copied.fetch_add(len, Ordering::Relaxed) + len;
            self.inner
                .jobs
                .update(self.job, |s| s.bytes_written = total_copied);
            if let Some(rate) = self.options.rate_limit_bytes_per_sec {
                let due = Duration::from_secs_f64(total_copied as f64 / rate as f64);
                self.pause_until(copy_started + due)?;
            }
        }
        self.with_hook(hook, |s| {
            s.protocol.copy_done().inspect(|()| trace::copy_done(id))
        })?;
        Ok(())
    }

    /// Closes the hook, writes the delta over the copy, reads every page back. Returns the
    /// manifest entry and the number of delta pages applied.
    fn merge_partition(
        &self,
        id: PartitionId,
        hook: &PartitionHook,
    ) -> Result<(ManifestPartition, u64)> {
        let page_size = self.shared.page_size as u64;
        let sealed = self.with_hook(hook, |s| s.protocol.close().inspect(|_| trace::close(id)))?;
        // The hook is closed: nothing is appended from here on, and the checkpointer never
        // waits for the merge's reads and writes (they run outside the hook lock).
        let delta = hook.lock().io.delta.reader()?;
        let target_path = self.tmp_dir.join(partition_file_name(id.0));
        let target = self
            .shared
            .vfs
            .open(&target_path, OpenMode::ReadWrite)
            .ctx("open snapshot partition file", &target_path)?;
        // Each entry goes to its page's place as it is read (module doc, "Bounds"): one bit per
        // page of the cut refuses a page captured twice, which the protocol's bitset rules out.
        let mut merged = vec![0u64; (sealed.pages_at_cut as usize).div_ceil(64)];
        let mut traced = Vec::new();
        let scan = delta.for_each_entry(|index, page| {
            if index >= sealed.pages_at_cut {
                return Err(Error::InvalidSnapshot(format!(
                    "delta of partition {id} holds page {index} beyond the cut"
                )));
            }
            let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
            if merged[word] & bit != 0 {
                return Err(Error::Corrupted {
                    file: delta_path(&self.tmp_dir, id),
                    page: Some(index as u64),
                    reason: "page captured twice".into(),
                });
            }
            merged[word] |= bit;
            if trace::enabled() {
                traced.push((index, trace::PageImage::of(page, index)));
            }
            target
                .write_all_at(page, index as u64 * page_size)
                .ctx("merge delta page", &target_path)
        })?;
        trace::merge(id, traced);
        self.shared
            .merge_buffer_bytes_peak
            .fetch_max(scan.buffer_bytes_peak, Ordering::Relaxed);
        let expected_len = sealed.pages_at_cut as u64 * page_size;
        let len = target
            .len()
            .ctx("stat snapshot partition file", &target_path)?;
        if len != expected_len {
            // Pages neither copied nor captured would read as holes below: fail on them there.
            target
                .set_len(expected_len)
                .ctx("size snapshot partition file", &target_path)?;
        }
        // Read every page back: its footer must verify (no hole, no torn page: S3). In chunks
        // of up to 1 MiB: one read per page was most of the merge's time.
        let mut page_crcs = Vec::with_capacity(sealed.pages_at_cut as usize);
        let pages_per_read = (MERGE_READ_BYTES / page_size).max(1) as u32;
        let mut chunk = vec![0u8; (pages_per_read as u64 * page_size) as usize];
        let mut first = 0u32;
        while first < sealed.pages_at_cut {
            let count = pages_per_read.min(sealed.pages_at_cut - first);
            let bytes = &mut chunk[..(count as u64 * page_size) as usize];
            target
                .read_exact_at(bytes, first as u64 * page_size)
                .ctx("read back snapshot pages", &target_path)?;
            for (offset, page) in bytes.chunks_exact(page_size as usize).enumerate() {
                let footer = format::verify_page(page, first + offset as u32, &target_path)?;
                page_crcs.push(footer.crc);
            }
            first += count;
        }
        target
            .sync_all()
            .ctx("fsync snapshot partition file", &target_path)?;
        Ok((
            ManifestPartition {
                id: id.0,
                file: partition_file_name(id.0),
                page_count: sealed.pages_at_cut,
                page_crcs,
            },
            scan.entries,
        ))
    }

    /// format.md §5: fsync, manifest, rename, fsync the target directory.
    fn publish(&self, manifest: &Manifest) -> Result<()> {
        let vfs = &self.shared.vfs;
        let tmp = &self.tmp_dir;
        let partitions = tmp.join(PARTITIONS_DIR);
        vfs.sync_dir(&partitions)
            .ctx("fsync snapshot partitions", &partitions)?;
        let deltas = tmp.join(DELTAS_DIR);
        vfs.remove_dir_all(&deltas)
            .ctx("remove snapshot deltas", &deltas)?;
        let manifest_path = tmp.join(MANIFEST_FILE_NAME);
        let file = vfs
            .open(&manifest_path, OpenMode::CreateNew)
            .ctx("create manifest", &manifest_path)?;
        file.write_all_at(&manifest.to_json(), 0)
            .ctx("write manifest", &manifest_path)?;
        file.sync_all().ctx("fsync manifest", &manifest_path)?;
        vfs.sync_dir(tmp).ctx("fsync snapshot directory", tmp)?;
        self.shared.check()?;
        vfs.rename(tmp, &self.final_dir)
            .ctx("publish snapshot", &self.final_dir)?;
        if let Err(error) = vfs.sync_dir(&self.options.target_dir) {
            let error = Error::io(
                "fsync snapshot target directory",
                &self.options.target_dir,
                error,
            );
            return Err(self.take_back(error));
        }
        Ok(())
    }

    /// After a rename whose durability is unknown (the target directory's fsync failed): takes
    /// the final name back before `wait` reports `error`, so that the caller's view is all or
    /// nothing. Reporting success instead would be wrong for an operator: a crash could still
    /// take the snapshot away, and a backup known to have failed is retried, one believed made
    /// is not. Taking back is one atomic rename to the temporary name, whose marker still exists:
    /// the failure cleanup removes it (durably, or the next open does). Only if that rename fails
    /// too is the final name removed outright; if even that fails, the error says that the name
    /// is left and must not be trusted.
    fn take_back(&self, error: Error) -> Error {
        if bugs::active(Bug::PublishLeavesFinalName) {
            return error;
        }
        let vfs = &self.shared.vfs;
        let taken_back = vfs.rename(&self.final_dir, &self.tmp_dir).or_else(|rename| {
            tracing::warn!(dir = %self.final_dir.display(), %rename, "could not rename a snapshot whose publish failed back to its temporary name; removing it");
            vfs.remove_dir_all(&self.final_dir)
        });
        match taken_back {
            Ok(()) => {
                // Best effort: the marker and the failure cleanup remove the temporary name.
                if let Err(sync) = vfs.sync_dir(&self.options.target_dir) {
                    tracing::warn!(dir = %self.options.target_dir.display(), %sync, "could not fsync the target directory after taking a snapshot back");
                }
                error
            }
            Err(undo) => Error::InvalidSnapshot(format!(
                "{error}; and the published name {} could not be taken back ({undo}): it is left behind, its durability unknown, and must be deleted",
                self.final_dir.display()
            )),
        }
    }
}

/// What [`remove_unfinished`] did with the markers of snapshots that never published.
#[derive(Debug, Default)]
pub(crate) struct UnfinishedCleanup {
    /// Temporary directories removed (their markers too).
    pub(crate) removed: Vec<PathBuf>,
    /// Temporary directories that could not be checked or removed; their markers are kept, so
    /// that the next open tries again.
    pub(crate) failed: Vec<PathBuf>,
}

/// Removes the temporary directories of snapshots that never published (a crash, or a failure
/// whose cleanup failed), as recorded by their markers. Called by `Engine::open`.
///
/// A temporary directory lives in the snapshot's target, outside the store (often on another
/// device, say a backup mount that is not there right now), so failing to remove it must not
/// keep the store from opening: it is logged, listed in `failed`, and its marker kept for the
/// next open. Errors on the store's own marker directory are the store's and are returned.
pub(crate) fn remove_unfinished(vfs: &Arc<dyn Vfs>, store_dir: &Path) -> Result<UnfinishedCleanup> {
    let markers = store_dir.join(SNAPSHOTS_TMP_DIR);
    let mut cleanup = UnfinishedCleanup::default();
    if !vfs.is_dir(&markers).ctx("stat", &markers)? {
        return Ok(cleanup);
    }
    for name in vfs
        .read_dir(&markers)
        .ctx("list snapshot markers", &markers)?
    {
        let marker = markers.join(&name);
        if layout::is_snapshot_marker(&name) {
            let tmp = read_marker(vfs, &marker)?;
            if layout::is_snapshot_tmp_dir(&tmp) {
                match remove_tmp_dir(vfs, &tmp) {
                    Ok(true) => {
                        tracing::info!(dir = %tmp.display(), "removed an unfinished snapshot");
                        cleanup.removed.push(tmp);
                    }
                    Ok(false) => {}
                    Err(error) if bugs::active(Bug::UnfinishedCleanupFailsOpen) => {
                        return Err(error)
                    }
                    Err(error) => {
                        tracing::warn!(dir = %tmp.display(), marker = %marker.display(), %error, "could not remove an unfinished snapshot's temporary directory; the next open tries again");
                        cleanup.failed.push(tmp);
                        continue; // keep the marker
                    }
                }
            }
        }
        vfs.remove_file(&marker)
            .ctx("remove snapshot marker", &marker)?;
    }
    vfs.sync_dir(&markers)
        .ctx("fsync snapshot markers", &markers)?;
    Ok(cleanup)
}

/// The temporary directory a marker names.
fn read_marker(vfs: &Arc<dyn Vfs>, marker: &Path) -> Result<PathBuf> {
    let file = vfs
        .open(marker, OpenMode::Read)
        .ctx("open snapshot marker", marker)?;
    let len = file
        .len()
        .ctx("stat snapshot marker", marker)?
        .min(64 * 1024);
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .ctx("read snapshot marker", marker)?;
    Ok(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Removes `tmp` durably if it exists; whether it did.
fn remove_tmp_dir(vfs: &Arc<dyn Vfs>, tmp: &Path) -> Result<bool> {
    if !vfs.exists(tmp).ctx("stat", tmp)? {
        return Ok(false);
    }
    vfs.remove_dir_all(tmp)
        .ctx("remove unfinished snapshot", tmp)?;
    if let Some(parent) = tmp.parent() {
        vfs.sync_dir(parent)
            .ctx("fsync snapshot target directory", parent)?;
    }
    Ok(true)
}

impl Inner {
    /// Requests the checkpoint that will carry the snapshot's cut. With a checkpointer thread it
    /// is scheduled there; without one, a thread of ours runs it (returned, to be joined).
    fn request_snapshot_checkpoint(self: &Arc<Self>) -> Result<Option<thread::JoinHandle<()>>> {
        if self.config.background_checkpointer {
            self.request_forced_checkpoint();
            return Ok(None);
        }
        let inner = Arc::clone(self);
        thread::Builder::new()
            .name("deltasnap-snapshot-checkpoint".into())
            .spawn(move || {
                if let Err(error) = checkpoint::run(&inner, Trigger::Snapshot) {
                    tracing::warn!(%error, "the snapshot's checkpoint failed");
                }
            })
            .map(Some)
            .map_err(|e| Error::io("spawn snapshot checkpoint thread", &self.dir, e))
    }
}
