//! The snapshot task: the engine's I/O around [`protocol::PartitionSnapshot`](crate::snapshot::protocol::PartitionSnapshot).
//!
//! Three parties, as in DESIGN §4:
//!
//! - the **write hook** ([`SnapshotListener`], a [`CheckpointListener`](crate::CheckpointListener) called by the checkpointer):
//!   at the cut of the first checkpoint that begins after the snapshot was requested (S2) it
//!   creates one protocol state and one delta file per partition; before every partition write it
//!   asks the protocol what to capture, appends it to the delta, and returns a guard that ends the
//!   hook call (`page_write_done`) only after the checkpointer's file write returned. While a hook
//!   call is in flight the protocol refuses every other transition, so the copier and the merge
//!   wait for it (the *hook lock* of the protocol's locking contract: [`HookCell`](crate::snapshot::hook::HookCell));
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
//!   is reported in [`SnapshotProgress::merge_buffer_bytes_peak`](crate::snapshot::SnapshotProgress::merge_buffer_bytes_peak).
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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bugs::{self, Bug};
use crate::error::{Error, IoContext, Result};
use crate::format;
use crate::jobs::{JobKind, JobStage};
use crate::layout::{self, DELTAS_DIR, PARTITIONS_DIR, SNAPSHOTS_TMP_DIR};
use crate::snapshot::dirs::create_dir_all_durable;
use crate::snapshot::handle::SnapshotHandle;
use crate::snapshot::hook::HookState;
use crate::snapshot::host::SnapshotHost;
use crate::snapshot::listener::SnapshotListener;
use crate::snapshot::manifest::{
    hex, partition_file_name, Manifest, ManifestMetadata, ManifestPartition, MANIFEST_FILE_NAME,
    MANIFEST_FORMAT_VERSION,
};
use crate::snapshot::options::SnapshotOptions;
use crate::snapshot::protocol::ProtocolError;
use crate::snapshot::state::{PartitionHook, PartitionIo, Shared, TaskState};
use crate::snapshot::trace;
use crate::sync::atomic::Ordering;
use crate::sync::{thread, Arc};
use crate::types::PartitionId;
use crate::vfs::OpenMode;

/// Bytes the merge reads back at a time to check the merged pages.
const MERGE_READ_BYTES: u64 = 1 << 20;

/// Starts a snapshot (see `Engine::snapshot`).
pub(crate) fn start(
    host: Arc<dyn SnapshotHost>,
    mut options: SnapshotOptions,
) -> Result<SnapshotHandle> {
    let chunk_pages = options.validate(host.page_size())?;
    options.target_dir = std::path::absolute(&options.target_dir).map_err(|e| {
        Error::io(
            "resolve the snapshot target directory",
            &options.target_dir,
            e,
        )
    })?;
    let vfs = host.vfs();
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
    let claim = SnapshotClaim::take(&host, &options.name)?;
    // From here on, `claim` releases the slot if we return early.
    if let Err(error) = set_up(host.as_ref(), &options, &tmp_dir) {
        let _ = vfs.remove_dir_all(&tmp_dir);
        let _ = vfs.remove_file(&layout::snapshot_marker_path(
            host.store_dir(),
            &options.name,
        ));
        drop(claim);
        return Err(error);
    }

    let shared = Arc::new(Shared::new(
        vfs,
        host.page_size(),
        options.delta_policy,
        tmp_dir.clone(),
    ));
    let cancel_shared = Arc::clone(&shared);
    host.set_snapshot_cancel(Arc::new(move || cancel_shared.cancel()));
    let listener_id = host.add_listener(Arc::new(SnapshotListener(Arc::clone(&shared))));
    let job = host.jobs().start(JobKind::Snapshot, JobStage::Waiting);
    let task = Task {
        host: Arc::clone(&host),
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
        .map_err(|e| Error::io("spawn snapshot thread", host.store_dir(), e))?;
    Ok(SnapshotHandle::new(shared, job, thread))
}

/// Creates what a snapshot needs before its cut, in an order a crash cannot leave uncleanable:
/// the marker in the store, the target directory, the temporary directory.
fn set_up(host: &dyn SnapshotHost, options: &SnapshotOptions, tmp_dir: &Path) -> Result<()> {
    let vfs = host.vfs();
    if vfs.exists(tmp_dir).ctx("stat", tmp_dir)? {
        return Err(Error::InvalidArgument(format!(
            "{} exists: another snapshot of this name is being made, or one crashed and its store was not reopened",
            tmp_dir.display()
        )));
    }
    // 1. The marker first, so that a crash from here on leaves nothing `open` cannot clean.
    let markers = host.store_dir().join(SNAPSHOTS_TMP_DIR);
    vfs.create_dir_all(&markers)
        .ctx("create snapshot marker directory", &markers)?;
    let marker = layout::snapshot_marker_path(host.store_dir(), &options.name);
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
}

/// The slot "one snapshot at a time"; dropping it frees the slot.
struct SnapshotClaim {
    host: Arc<dyn SnapshotHost>,
}

impl SnapshotClaim {
    /// Takes the store's one snapshot slot for snapshot `name`.
    fn take(host: &Arc<dyn SnapshotHost>, name: &str) -> Result<Self> {
        host.claim_snapshot_slot(name)?;
        Ok(SnapshotClaim {
            host: Arc::clone(host),
        })
    }
}

impl Drop for SnapshotClaim {
    fn drop(&mut self) {
        self.host.release_snapshot_slot();
    }
}

struct Task {
    host: Arc<dyn SnapshotHost>,
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
        self.host.remove_listener(self.listener_id);
        let held: Vec<PartitionId> = self.shared.hooks.read().keys().copied().collect();
        self.host.release_partitions(&held);
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
            let marker = layout::snapshot_marker_path(self.host.store_dir(), &self.options.name);
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
                self.host.jobs().finish(self.job, None);
                metrics::counter!("deltasnap_snapshots_total").increment(1);
                metrics::histogram!("deltasnap_snapshot_seconds").record(duration.as_secs_f64());
                tracing::info!(name = %manifest.name, cut_epoch = manifest.cut_epoch, delta_pages = manifest.delta_pages, ?duration, "snapshot published");
            }
            Err(error) => {
                self.shared.set_stage(JobStage::Failed);
                self.host.jobs().finish(self.job, Some(error.to_string()));
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
        self.host.jobs().update(self.job, |s| {
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
        let runner = Arc::clone(&self.host).request_cut_checkpoint()?;
        let cut = self.wait_for(|state| state.cut.clone())?;
        self.host.jobs().update(self.job, |s| {
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
        self.host.hold_partitions(&ids);
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
            if let Some(reason) = self.host.poisoned() {
                return Err(Error::Poisoned(reason));
            }
            if self.host.is_closed() {
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
        step: impl FnOnce(&mut HookState<PartitionIo>) -> std::result::Result<T, ProtocolError>,
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
            #[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
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
            self.host
                .jobs()
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
                    file: layout::snapshot_delta_path(&self.tmp_dir, id),
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
