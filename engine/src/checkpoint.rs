//! The checkpointer: the only code that writes partition files (C1).
//!
//! Checkpoint `E` (DESIGN §3):
//! 1. **cut**: read the redo log's end (the replay-start LSN), publish epoch `E+1`, drain `E`'s
//!    writers. The dirty set of `E` is now frozen. Listeners' `on_checkpoint_begin` runs here, so
//!    a snapshot's hook exists before any page of `E` is written (S2).
//! 2. **log first**: fsync the redo log up to its end, so that no page reaches a partition file
//!    before the redo records that produced it are durable (without it, a crash could leave a
//!    file holding a write whose earlier writes were lost: not a prefix, R1).
//! 3. **write**: for each dirty page in (partition, index) order, take its checkpoint image if a
//!    writer of `E+1` kept one, else its latest image (K2); call every listener's
//!    `before_page_write`, holding the guards they return across the file write (the cursor-aware
//!    snapshot needs decide-and-write to be atomic), then write the sealed page.
//! 4. fsync every written partition file and the partitions directory if a file was created (C2).
//! 5. **end**: write the control file naming `E` durably; only then `on_checkpoint_end`.
//! 6. **cleanup**: purge redo segments wholly before the replay-start LSN (C3: after step 5), and
//!    delete the files of partitions dropped at or before `E`.
//!
//! A failure in step 6 fails nothing: it is logged, counted
//! (`deltasnap_checkpoint_cleanup_failures_total`) and retried by the next checkpoint's cleanup.
//! A failure in steps 2–5 poisons the engine (writes fail with `Error::Poisoned`): after a failed
//! write or fsync the page cache cannot be trusted, the redo log still holds every write, and
//! reopening recovers from it. Nothing synced is lost. A listener that panics fails the
//! checkpoint the same way, the poison naming the callback and the panic's message; any other
//! panic in a checkpoint poisons too (`checkpoint panicked: …`). Nothing unwinds out of a
//! checkpoint, so the checkpointer thread never dies silently and every waiter (`checkpoint()`,
//! throttled writers, a snapshot) sees the poison (L2).
//!
//! Shutdown (L2): `close` sets `Schedule::shutdown`; the thread starts no run after it sees it,
//! so a `checkpoint()` whose run has not started returns `Error::Closed` (close's final
//! checkpoint makes the writes durable). After that final checkpoint no other runs: a caller's
//! thread that raced `close` gets `Error::Closed` instead of writing the store.
//!
//! Dropped partitions: the dirty pages of a partition dropped at or before the cut are not
//! written, and their dirty bytes are returned in step 3 (nothing later would; L3). Their
//! resident bytes go in step 6, with the file.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::bugs::{self, Bug};
use crate::control::{self, ControlData};
use crate::engine::Inner;
use crate::error::{Error, IoContext, Result};
use crate::format;
use crate::jobs::{JobKind, JobStage};
use crate::sync::{Arc, Mutex};
use crate::types::{Epoch, Lsn, PageId, PartitionId};
use crate::vfs::VfsFile;

/// A partition as of a checkpoint's cut.
#[derive(Debug, Clone)]
pub struct CutPartition {
    pub id: PartitionId,
    /// The logical page count at the cut.
    pub page_count: u32,
    /// The partition file and its path (the file stays open while the cut is referenced).
    pub file: Arc<dyn VfsFile>,
    pub path: PathBuf,
}

/// What a listener learns at the cut of checkpoint `epoch`.
#[derive(Debug, Clone)]
pub struct CheckpointCut {
    pub epoch: Epoch,
    pub replay_start_lsn: Lsn,
    pub page_size: u32,
    pub partitions: Vec<CutPartition>,
    pub metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Held by the checkpointer across one page's file write; dropped right after it.
pub type WriteGuard = Box<dyn Any + Send>;

/// The seam between the checkpointer and whoever must see every partition write (the snapshot
/// task). Calls come from the checkpointer thread, in the order of the module doc. A listener's
/// own failures are its own: it must never fail or block the checkpoint for long.
pub trait CheckpointListener: Send + Sync {
    /// The cut of checkpoint `cut.epoch` was taken; no page of it has been written yet.
    fn on_checkpoint_begin(&self, _cut: &CheckpointCut) {}

    /// The checkpoint of `epoch` is about to write `image` (a sealed page) as page `page`.
    /// The returned guard is held until the write returned.
    fn before_page_write(&self, _epoch: Epoch, _page: PageId, _image: &[u8]) -> Option<WriteGuard> {
        None
    }

    /// The checkpoint of `epoch` is durable (its control file is).
    fn on_checkpoint_end(&self, _epoch: Epoch) {}

    /// The checkpoint of `epoch` failed; the engine is poisoned.
    fn on_checkpoint_failed(&self, _epoch: Epoch, _error: &Error) {}
}

/// What one checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointOutcome {
    /// The checkpoint's epoch; `None` if nothing had changed and it was skipped.
    pub epoch: Option<Epoch>,
    pub replay_start_lsn: Lsn,
    pub pages_written: u64,
    pub duration: Duration,
}

/// Why the checkpointer started a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    OnDemand,
    Interval,
    DirtyBytes,
    RedoBytes,
    Close,
    /// A snapshot needs a cut: runs even if nothing changed.
    Snapshot,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::OnDemand => "on demand",
            Trigger::Interval => "interval",
            Trigger::DirtyBytes => "dirty bytes",
            Trigger::RedoBytes => "redo bytes",
            Trigger::Close => "close",
            Trigger::Snapshot => "snapshot",
        }
    }
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

pub(crate) type Listeners = Vec<(u64, Arc<dyn CheckpointListener>)>;

/// The checkpointer thread's loop.
pub(crate) fn run_thread(inner: Arc<Inner>) {
    loop {
        let trigger = {
            let mut schedule = inner.schedule.lock();
            let trigger = loop {
                if schedule.shutdown {
                    return;
                }
                if let Some(trigger) = due(&inner, &mut schedule) {
                    break trigger;
                }
                if inner.wal.maintenance_due() {
                    // The redo log's spare and naming of rolled segments, off the writers' path
                    // (wal module docs, "Segment roll"). An error failed the log; writers see it.
                    drop(schedule);
                    if let Err(error) = inner.wal.maintain() {
                        tracing::warn!(%error, "redo log maintenance failed");
                    }
                    schedule = inner.schedule.lock();
                }
                let (guard, _) = inner
                    .schedule_changed
                    .wait_timeout(schedule, Duration::from_millis(20));
                schedule = guard;
            };
            schedule.started_run += 1;
            trigger
        };
        let result = run(&inner, trigger);
        let mut schedule = inner.schedule.lock();
        schedule.completed_run = schedule.started_run;
        schedule.last_end = Some(Instant::now());
        schedule.last_result = Some(result.map_err(|e| e.to_string()));
        drop(schedule);
        inner.schedule_changed.notify_all();
        if inner.poisoned().is_some() {
            // Nothing more can be checkpointed; callers of checkpoint() get the poison error.
            return;
        }
    }
}

fn due(inner: &Inner, schedule: &mut Schedule) -> Option<Trigger> {
    if std::mem::take(&mut schedule.snapshot_requested) {
        return Some(Trigger::Snapshot);
    }
    if schedule.requested_run > schedule.started_run {
        return Some(Trigger::OnDemand);
    }
    // The byte thresholds can stay passed with nothing to checkpoint (redo appended in the last
    // checkpoint's epoch after its cut read the log's end): such a checkpoint is skipped, and
    // running it again at once would spin on an idle engine. The interval cannot spin: a
    // skipped run restarts it.
    if inner.epochs.current().has_changes() {
        if inner.budget.dirty() >= inner.budget.dirty_checkpoint_bytes {
            return Some(Trigger::DirtyBytes);
        }
        let redo_bytes = inner
            .wal
            .end_lsn()
            .saturating_sub(inner.last_replay_start());
        if redo_bytes >= inner.config.checkpoint_redo_bytes {
            return Some(Trigger::RedoBytes);
        }
    }
    if let Some(interval_ms) = inner.config.checkpoint_interval_ms {
        let since = schedule.last_end.unwrap_or(inner.opened_at);
        if since.elapsed() >= Duration::from_millis(interval_ms) {
            return Some(Trigger::Interval);
        }
    }
    None
}

/// Runs one checkpoint (the numbered steps of the module doc) on the calling thread. Only one
/// runs at a time: the checkpointer thread, or `close` after that thread stopped (C1). None runs
/// after `close`'s final one (`Error::Closed`): a caller's thread that raced `close` must not
/// write a store this engine no longer holds. A panic (a listener's or our own) poisons the
/// engine instead of unwinding into the caller or killing the checkpointer thread (L2).
pub(crate) fn run(inner: &Inner, trigger: Trigger) -> Result<CheckpointOutcome> {
    let mut closed = inner.checkpoint_serial.lock();
    if *closed {
        return Err(Error::Closed);
    }
    if let Some(reason) = inner.poisoned() {
        return Err(Error::Poisoned(reason));
    }
    if trigger == Trigger::Close {
        *closed = true;
    }
    catch_panic(|| run_serialized(inner, trigger)).unwrap_or_else(|message| {
        inner.poison(format!("checkpoint panicked: {message}"));
        Err(Error::Poisoned(inner.poisoned().unwrap_or(message)))
    })
}

/// Runs `call`, returning the message of a panic it raised instead of unwinding.
fn catch_panic<T>(call: impl FnOnce() -> T) -> std::result::Result<T, String> {
    if bugs::active(Bug::ListenerPanicNotPoisoned) {
        return Ok(call());
    }
    std::panic::catch_unwind(AssertUnwindSafe(call)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// Calls a listener. Its panic poisons the engine with the panic's message and fails the
/// checkpoint like an I/O error would: the listener's state (a snapshot's hook) is unknown.
fn call_listener<T>(inner: &Inner, callback: &str, call: impl FnOnce() -> T) -> Result<T> {
    catch_panic(call).map_err(|message| {
        let reason = format!("checkpoint listener panicked in {callback}: {message}");
        inner.poison(reason.clone());
        Error::Poisoned(reason)
    })
}

/// [`run`] once the serial lock is held.
fn run_serialized(inner: &Inner, trigger: Trigger) -> Result<CheckpointOutcome> {
    let started = Instant::now();
    let current = inner.epochs.current();
    if !current.has_changes() && trigger != Trigger::Snapshot {
        return Ok(CheckpointOutcome {
            epoch: None,
            replay_start_lsn: inner.last_replay_start(),
            pages_written: 0,
            duration: started.elapsed(),
        });
    }
    drop(current);
    let job = inner.jobs.start(JobKind::Checkpoint, JobStage::Cut);
    let listeners: Listeners = inner.listeners.read().clone();

    // 1. The cut.
    let replay_start_lsn = inner.wal.end_lsn();
    let old = inner.epochs.cut();
    let epoch = old.epoch;
    inner.jobs.update(job, |s| {
        s.epoch = Some(epoch);
        s.redo_lsn = Some(replay_start_lsn);
    });
    tracing::debug!(
        epoch,
        replay_start_lsn,
        trigger = trigger.name(),
        "checkpoint cut"
    );
    let cut = inner.cut_view(epoch, replay_start_lsn);
    let dirty = old.take_dirty_pages();
    let result = listeners
        .iter()
        .try_for_each(|(_, listener)| {
            call_listener(inner, "on_checkpoint_begin", || {
                listener.on_checkpoint_begin(&cut)
            })
        })
        .and_then(|()| write_and_end(inner, job, epoch, &dirty, &cut, &listeners));
    match result {
        Ok(pages_written) => {
            let duration = started.elapsed();
            metrics::counter!("deltasnap_checkpoints_total").increment(1);
            metrics::histogram!("deltasnap_checkpoint_seconds").record(duration.as_secs_f64());
            metrics::counter!("deltasnap_checkpoint_pages_written_total").increment(pages_written);
            inner.jobs.finish(job, None);
            tracing::info!(
                epoch,
                pages_written,
                ?duration,
                trigger = trigger.name(),
                "checkpoint complete"
            );
            Ok(CheckpointOutcome {
                epoch: Some(epoch),
                replay_start_lsn,
                pages_written,
                duration,
            })
        }
        Err(error) => {
            inner.poison(format!("checkpoint {epoch} failed: {error}"));
            for (_, listener) in &listeners {
                // A panic here is already the poison's cause or comes after it.
                let _ = call_listener(inner, "on_checkpoint_failed", || {
                    listener.on_checkpoint_failed(epoch, &error)
                });
            }
            inner.jobs.finish(job, Some(error.to_string()));
            tracing::error!(epoch, %error, "checkpoint failed; engine is read-only until reopened");
            Err(error)
        }
    }
}

/// Steps 2–6; returns the number of pages written.
fn write_and_end(
    inner: &Inner,
    job: u64,
    epoch: Epoch,
    dirty: &BTreeSet<PageId>,
    cut: &CheckpointCut,
    listeners: &Listeners,
) -> Result<u64> {
    // 2. Log first.
    inner.wal.sync()?;

    // 3. Write.
    inner.jobs.update(job, |s| {
        s.stage = JobStage::Writing;
        s.bytes_total = dirty.len() as u64 * inner.page_size as u64;
    });
    let page_size = inner.page_size;
    let mut sealed = vec![0u8; page_size];
    let mut written_partitions = BTreeSet::new();
    let mut pages_written = 0u64;
    let partitions = inner.partitions_including_dropped();
    let cut_counts: BTreeMap<PartitionId, u32> = cut
        .partitions
        .iter()
        .map(|p| (p.id, p.page_count))
        .collect();
    for &page in dirty {
        let Some(partition) = partitions.get(&page.partition) else {
            continue;
        };
        let Some(&page_count_at_cut) = cut_counts.get(&page.partition) else {
            // Dropped at or before the cut: its pages are not part of this checkpoint, nor of
            // any later one, so no checkpoint will ever release their dirty bytes but this one
            // (L3; its resident bytes go when the partition's file is deleted).
            if !bugs::active(Bug::DropLeaksDirtyBytes) {
                let slot = partition.slot(page.index)?;
                inner.budget.release_dropped_page(&slot);
            }
            continue;
        };
        debug_assert!(
            page.index < page_count_at_cut,
            "{page} dirty in {epoch} but allocated later"
        );
        let slot = partition.slot(page.index)?;
        let (image, wrote_latest) = {
            let latch = slot.lock();
            match &latch.checkpoint_image {
                Some(kept) => (Arc::clone(kept), false),
                None => {
                    assert!(
                        latch.unwritten && latch.image_epoch <= epoch,
                        "{page} is dirty in {epoch} but its image is from epoch {} (unwritten: {})",
                        latch.image_epoch,
                        latch.unwritten
                    );
                    (
                        Arc::clone(
                            latch
                                .image
                                .as_ref()
                                .expect("unwritten images stay resident"),
                        ),
                        true,
                    )
                }
            }
        };
        sealed.copy_from_slice(&image.bytes);
        format::seal_page(&mut sealed, page.index, image.lsn);
        let mut guards: Vec<WriteGuard> = Vec::with_capacity(listeners.len());
        for (_, listener) in listeners {
            guards.extend(call_listener(inner, "before_page_write", || {
                listener.before_page_write(epoch, page, &sealed)
            })?);
        }
        partition
            .file
            .write_all_at(&sealed, page.index as u64 * page_size as u64)
            .ctx("write page", &partition.path)?;
        drop(guards);
        {
            let mut latch = slot.lock();
            let mut released = 0i64;
            if latch
                .checkpoint_image
                .as_ref()
                .is_some_and(|kept| Arc::ptr_eq(kept, &image))
            {
                latch.checkpoint_image = None;
                released += 1;
                inner.budget.add_resident(-1);
            }
            if wrote_latest
                && latch
                    .image
                    .as_ref()
                    .is_some_and(|latest| Arc::ptr_eq(latest, &image))
            {
                latch.unwritten = false;
                released += 1;
            }
            inner.budget.add_dirty(-released);
        }
        written_partitions.insert(page.partition);
        pages_written += 1;
        if pages_written.is_multiple_of(256) {
            inner.jobs.update(job, |s| {
                s.pages_written = pages_written;
                s.bytes_written = pages_written * page_size as u64;
            });
            inner.schedule_changed.notify_all();
        }
    }
    inner.jobs.update(job, |s| {
        s.pages_written = pages_written;
        s.bytes_written = pages_written * page_size as u64;
        s.stage = JobStage::Publishing;
    });

    // 4. fsync partition files (C2), then 5. the control file.
    let sync_partitions = || -> Result<()> {
        for id in &written_partitions {
            let partition = &partitions[id];
            partition
                .file
                .sync_all()
                .ctx("fsync partition file", &partition.path)?;
        }
        inner.sync_partitions_dir(&partitions)
    };
    let control = ControlData {
        page_size: inner.page_size as u32,
        checkpoint_epoch: epoch,
        replay_start_lsn: cut.replay_start_lsn,
        partitions: cut
            .partitions
            .iter()
            .map(|p| (p.id, p.page_count))
            .collect(),
        metadata: cut.metadata.clone(),
    };
    if bugs::active(Bug::PurgeBeforeControl) {
        inner.wal.purge_before(cut.replay_start_lsn)?;
    }
    if bugs::active(Bug::ControlBeforePageFsync) {
        control::write(&inner.vfs, &inner.dir, &control)?;
        sync_partitions()?;
    } else {
        sync_partitions()?;
        control::write(&inner.vfs, &inner.dir, &control)?;
    }
    inner.set_last_replay_start(cut.replay_start_lsn);
    for (_, listener) in listeners {
        call_listener(inner, "on_checkpoint_end", || {
            listener.on_checkpoint_end(epoch)
        })?;
    }

    // 6. Cleanup (C3: the control file naming the new replay start is durable). The checkpoint
    // has ended: a file that could not be deleted is garbage, not a risk to data, so a failure
    // here is reported and left to the next checkpoint's cleanup, which retries both steps
    // (redo segments stay listed until removed; a dropped partition until its file is gone).
    inner.jobs.update(job, |s| s.stage = JobStage::Cleanup);
    match inner.wal.purge_before(cut.replay_start_lsn) {
        Ok(purged) => tracing::debug!(epoch, purged, "checkpoint cleanup: redo purged"),
        Err(error) => {
            metrics::counter!("deltasnap_checkpoint_cleanup_failures_total").increment(1);
            tracing::warn!(epoch, %error, "checkpoint cleanup: purging redo segments failed; the next checkpoint retries");
        }
    }
    if let Err(error) = inner.delete_dropped_partitions(epoch) {
        metrics::counter!("deltasnap_checkpoint_cleanup_failures_total").increment(1);
        tracing::warn!(epoch, %error, "checkpoint cleanup: deleting dropped partition files failed; the next checkpoint retries");
    }
    inner.schedule_changed.notify_all();
    Ok(pages_written)
}

/// Guards the single running checkpoint; holds whether `close`'s final checkpoint has run.
pub(crate) type SerialLock = Mutex<bool>;
