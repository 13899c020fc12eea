//! One checkpoint, the numbered steps of the module doc (`checkpoint/mod.rs`), on the calling
//! thread.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use crate::bugs::{self, Bug};
use crate::control::{self, ControlData};
use crate::error::{Error, IoContext, Result};
use crate::format;
use crate::jobs::{JobKind, JobStage};
use crate::listener::{CheckpointCut, Listeners, WriteGuard};
use crate::memory::{PageImage, Partition, Slot};
use crate::store::{CheckpointOutcome, Store};
use crate::sync::{Arc, Mutex};
use crate::types::{Epoch, PageId, PartitionId};

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

/// Runs one checkpoint (the numbered steps of the module doc) on the calling thread. Only one
/// runs at a time: the checkpointer thread, or `close` after that thread stopped (C1). None runs
/// after `close`'s final one (`Error::Closed`): a caller's thread that raced `close` must not
/// write a store this engine no longer holds. A panic (a listener's or our own) poisons the
/// engine instead of unwinding into the caller or killing the checkpointer thread (L2).
pub(crate) fn run(store: &Store, trigger: Trigger) -> Result<CheckpointOutcome> {
    let mut closed = store.checkpoint_serial.lock();
    if *closed {
        return Err(Error::Closed);
    }
    if let Some(reason) = store.poisoned() {
        return Err(Error::Poisoned(reason));
    }
    if trigger == Trigger::Close {
        *closed = true;
    }
    catch_panic(|| run_serialized(store, trigger)).unwrap_or_else(|message| {
        store.poison(format!("checkpoint panicked: {message}"));
        Err(Error::Poisoned(store.poisoned().unwrap_or(message)))
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
fn call_listener<T>(store: &Store, callback: &str, call: impl FnOnce() -> T) -> Result<T> {
    catch_panic(call).map_err(|message| {
        let reason = format!("checkpoint listener panicked in {callback}: {message}");
        store.poison(reason.clone());
        Error::Poisoned(reason)
    })
}

/// [`run`] once the serial lock is held.
fn run_serialized(store: &Store, trigger: Trigger) -> Result<CheckpointOutcome> {
    let started = Instant::now();
    let current = store.epochs.current();
    if !current.has_changes() && trigger != Trigger::Snapshot {
        // Nothing to write, but a partition dropped in an epoch already checkpointed may have
        // outlived its checkpoint's cleanup (a snapshot held its file): its file and images go
        // now, not at the next change (L3).
        let checkpointed = current.epoch.saturating_sub(1);
        if let Err(error) = store.delete_dropped_partitions(checkpointed) {
            tracing::warn!(%error, "deleting dropped partition files failed; the next checkpoint retries");
        }
        return Ok(CheckpointOutcome {
            epoch: None,
            replay_start_lsn: store.last_replay_start(),
            pages_written: 0,
            duration: started.elapsed(),
        });
    }
    drop(current);
    let job = store.jobs.start(JobKind::Checkpoint, JobStage::Cut);
    let listeners: Listeners = store.listeners.read().clone();

    // 1. The cut.
    let replay_start_lsn = store.wal.end_lsn();
    let old = store.epochs.cut();
    let epoch = old.epoch;
    store.jobs.update(job, |s| {
        s.epoch = Some(epoch);
        s.redo_lsn = Some(replay_start_lsn);
    });
    tracing::debug!(
        epoch,
        replay_start_lsn,
        trigger = trigger.name(),
        "checkpoint cut"
    );
    let cut = store.cut_view(epoch, replay_start_lsn);
    let dirty = old.take_dirty_pages();
    let result = listeners
        .iter()
        .try_for_each(|(_, listener)| {
            call_listener(store, "on_checkpoint_begin", || {
                listener.on_checkpoint_begin(&cut)
            })
        })
        .and_then(|()| write_and_end(store, job, epoch, &dirty, &cut, &listeners));
    match result {
        Ok(pages_written) => {
            let duration = started.elapsed();
            metrics::counter!("deltasnap_checkpoints_total").increment(1);
            metrics::histogram!("deltasnap_checkpoint_seconds").record(duration.as_secs_f64());
            metrics::counter!("deltasnap_checkpoint_pages_written_total").increment(pages_written);
            store.jobs.finish(job, None);
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
            store.poison(format!("checkpoint {epoch} failed: {error}"));
            for (_, listener) in &listeners {
                // A panic here is already the poison's cause or comes after it.
                let _ = call_listener(store, "on_checkpoint_failed", || {
                    listener.on_checkpoint_failed(epoch, &error)
                });
            }
            store.jobs.finish(job, Some(error.to_string()));
            tracing::error!(epoch, %error, "checkpoint failed; engine is read-only until reopened");
            Err(error)
        }
    }
}

/// Steps 2–6; returns the number of pages written.
fn write_and_end(
    store: &Store,
    job: u64,
    epoch: Epoch,
    dirty: &BTreeSet<PageId>,
    cut: &CheckpointCut,
    listeners: &Listeners,
) -> Result<u64> {
    let run = Steps {
        store,
        job,
        epoch,
        cut,
        listeners,
        partitions: store.partitions_including_dropped(),
    };
    // 2. Log first.
    store.wal.sync()?;
    // 3. Write.
    let (pages_written, written_partitions) = run.write_pages(dirty)?;
    // 4. fsync partition files (C2), then 5. the control file.
    run.end(&written_partitions)?;
    // 6. Cleanup.
    run.cleanup();
    Ok(pages_written)
}

/// What steps 2–6 of checkpoint `epoch` work with.
struct Steps<'a> {
    store: &'a Store,
    job: u64,
    epoch: Epoch,
    cut: &'a CheckpointCut,
    listeners: &'a Listeners,
    /// Every partition, including the dropped ones whose file is not deleted yet.
    partitions: BTreeMap<PartitionId, Arc<Partition>>,
}

impl Steps<'_> {
    /// Step 3: writes every dirty page of the cut; returns the number of pages written and the
    /// partitions written to.
    fn write_pages(&self, dirty: &BTreeSet<PageId>) -> Result<(u64, BTreeSet<PartitionId>)> {
        let store = self.store;
        let page_size = store.page_size;
        store.jobs.update(self.job, |s| {
            s.stage = JobStage::Writing;
            s.bytes_total = dirty.len() as u64 * page_size as u64;
        });
        let mut sealed = vec![0u8; page_size];
        let mut written_partitions = BTreeSet::new();
        let mut pages_written = 0u64;
        let cut_counts: BTreeMap<PartitionId, u32> = self
            .cut
            .partitions
            .iter()
            .map(|p| (p.id, p.page_count))
            .collect();
        for &page in dirty {
            let Some(partition) = self.partitions.get(&page.partition) else {
                continue;
            };
            let Some(&page_count_at_cut) = cut_counts.get(&page.partition) else {
                // Dropped at or before the cut: its pages are not part of this checkpoint, nor of
                // any later one, so no checkpoint will ever release their dirty bytes but this one
                // (L3; its resident bytes go when the partition's file is deleted).
                if !bugs::active(Bug::DropLeaksDirtyBytes) {
                    let slot = partition.slot(page.index)?;
                    store.budget.release_dropped_page(&slot);
                }
                continue;
            };
            debug_assert!(
                page.index < page_count_at_cut,
                "{page} dirty in {} but allocated later",
                self.epoch
            );
            self.write_page(partition, page, &mut sealed)?;
            written_partitions.insert(page.partition);
            pages_written += 1;
            if pages_written.is_multiple_of(256) {
                store.jobs.update(self.job, |s| {
                    s.pages_written = pages_written;
                    s.bytes_written = pages_written * page_size as u64;
                });
                store.schedule_changed.notify_all();
            }
        }
        store.jobs.update(self.job, |s| {
            s.pages_written = pages_written;
            s.bytes_written = pages_written * page_size as u64;
            s.stage = JobStage::Publishing;
        });
        Ok((pages_written, written_partitions))
    }

    /// Writes one dirty page: its checkpoint image if a writer of `E+1` kept one, else its latest
    /// (K2), sealed, with every listener's guard held across the file write; then returns the
    /// dirty bytes it made clean.
    fn write_page(&self, partition: &Partition, page: PageId, sealed: &mut [u8]) -> Result<()> {
        let epoch = self.epoch;
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
        format::seal_page(sealed, page.index, image.lsn);
        let mut guards: Vec<WriteGuard> = Vec::with_capacity(self.listeners.len());
        for (_, listener) in self.listeners {
            guards.extend(call_listener(self.store, "before_page_write", || {
                listener.before_page_write(epoch, page, sealed)
            })?);
        }
        partition
            .file
            .write_all_at(sealed, page.index as u64 * self.store.page_size as u64)
            .ctx("write page", &partition.path)?;
        drop(guards);
        self.release_written(&slot, &image, wrote_latest);
        Ok(())
    }

    /// After `image` reached the file: drops the checkpoint image it was, or marks the
    /// page clean if it is still the latest, and returns their dirty bytes.
    fn release_written(&self, slot: &Mutex<Slot>, image: &Arc<PageImage>, wrote_latest: bool) {
        let budget = &self.store.budget;
        let mut latch = slot.lock();
        let mut released = 0i64;
        if latch
            .checkpoint_image
            .as_ref()
            .is_some_and(|kept| Arc::ptr_eq(kept, image))
        {
            latch.checkpoint_image = None;
            released += 1;
            budget.add_resident(-1);
        }
        if wrote_latest
            && latch
                .image
                .as_ref()
                .is_some_and(|latest| Arc::ptr_eq(latest, image))
        {
            latch.unwritten = false;
            released += 1;
        }
        budget.add_dirty(-released);
    }

    /// Steps 4 and 5: fsyncs the written partition files and the partitions directory (C2), then
    /// writes the control file naming the checkpoint; only then `on_checkpoint_end`.
    fn end(&self, written_partitions: &BTreeSet<PartitionId>) -> Result<()> {
        let store = self.store;
        let cut = self.cut;
        let sync_partitions = || -> Result<()> {
            for id in written_partitions {
                let partition = &self.partitions[id];
                partition
                    .file
                    .sync_all()
                    .ctx("fsync partition file", &partition.path)?;
            }
            store.sync_partitions_dir(&self.partitions)
        };
        let control = ControlData {
            page_size: store.page_size as u32,
            checkpoint_epoch: self.epoch,
            replay_start_lsn: cut.replay_start_lsn,
            partitions: cut
                .partitions
                .iter()
                .map(|p| (p.id, p.page_count))
                .collect(),
            metadata: cut.metadata.clone(),
        };
        if bugs::active(Bug::PurgeBeforeControl) {
            store.wal.purge_before(cut.replay_start_lsn)?;
        }
        if bugs::active(Bug::ControlBeforePageFsync) {
            control::write(&store.vfs, &store.dir, &control)?;
            sync_partitions()?;
        } else {
            sync_partitions()?;
            control::write(&store.vfs, &store.dir, &control)?;
        }
        store.set_last_replay_start(cut.replay_start_lsn);
        for (_, listener) in self.listeners {
            call_listener(store, "on_checkpoint_end", || {
                listener.on_checkpoint_end(self.epoch)
            })?;
        }
        Ok(())
    }

    /// Step 6 (C3: the control file naming the new replay start is durable). The checkpoint has
    /// ended: a file that could not be deleted is garbage, not a risk to data, so a failure here
    /// is reported and left to the next checkpoint's cleanup, which retries both steps (redo
    /// segments stay listed until removed; a dropped partition until its file is gone).
    fn cleanup(&self) {
        let (store, epoch) = (self.store, self.epoch);
        store.jobs.update(self.job, |s| s.stage = JobStage::Cleanup);
        match store.wal.purge_before(self.cut.replay_start_lsn) {
            Ok(purged) => tracing::debug!(epoch, purged, "checkpoint cleanup: redo purged"),
            Err(error) => {
                metrics::counter!("deltasnap_checkpoint_cleanup_failures_total").increment(1);
                tracing::warn!(epoch, %error, "checkpoint cleanup: purging redo segments failed; the next checkpoint retries");
            }
        }
        if let Err(error) = store.delete_dropped_partitions(epoch) {
            metrics::counter!("deltasnap_checkpoint_cleanup_failures_total").increment(1);
            tracing::warn!(epoch, %error, "checkpoint cleanup: deleting dropped partition files failed; the next checkpoint retries");
        }
        store.schedule_changed.notify_all();
    }
}
