//! The snapshot's write hook ([`SnapshotListener`], a [`CheckpointListener`] the task registers
//! for the snapshot's lifetime): at the cut of checkpoint `S` it installs one protocol state and
//! one delta file per partition; before every partition write it captures into the delta what the
//! protocol decides; at the end of `S` it tells the hooks and the task (task.rs's module doc).

use std::collections::BTreeMap;

use crate::bugs::{self, Bug};
use crate::error::{Error, IoContext, Result};
use crate::format;
use crate::layout;
use crate::listener::{CheckpointCut, CheckpointListener, WriteGuard};
use crate::snapshot::delta::DeltaFile;
use crate::snapshot::protocol::{Capture, PartitionSnapshot};
use crate::snapshot::state::{CutInfo, PartitionHook, PartitionIo, Shared};
use crate::snapshot::trace;
use crate::sync::atomic::Ordering;
use crate::sync::Arc;
use crate::types::{Epoch, PageId, PartitionId};

/// The write hook, registered with the engine for the snapshot's lifetime.
pub(crate) struct SnapshotListener(pub(crate) Arc<Shared>);

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
                let delta_path = layout::snapshot_delta_path(&shared.tmp_dir, partition.id);
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
