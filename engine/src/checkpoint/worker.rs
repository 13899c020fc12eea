//! The background checkpointer thread: it runs a checkpoint when one is due (on demand, by dirty
//! bytes, by redo bytes, by interval, or for a snapshot's cut) and keeps the redo log's spare
//! segments ready in between.

use std::time::{Duration, Instant};

use crate::checkpoint::run::{run, Trigger};
use crate::error::{Error, Result};
use crate::store::{Schedule, Store};
use crate::sync::{thread, Arc};

/// The checkpointer thread's loop.
pub(crate) fn run_thread(store: Arc<Store>) {
    loop {
        let trigger = {
            let mut schedule = store.schedule.lock();
            let trigger = loop {
                if schedule.shutdown {
                    return;
                }
                if let Some(trigger) = due(&store, &mut schedule) {
                    break trigger;
                }
                if store.wal.maintenance_due() {
                    // The redo log's spare and naming of rolled segments, off the writers' path
                    // (wal module docs, "Segment roll"). An error failed the log; writers see it.
                    drop(schedule);
                    if let Err(error) = store.wal.maintain() {
                        tracing::warn!(%error, "redo log maintenance failed");
                    }
                    schedule = store.schedule.lock();
                }
                let (guard, _) = store
                    .schedule_changed
                    .wait_timeout(schedule, Duration::from_millis(20));
                schedule = guard;
            };
            schedule.started_run += 1;
            trigger
        };
        let result = run(&store, trigger);
        let mut schedule = store.schedule.lock();
        schedule.completed_run = schedule.started_run;
        schedule.last_end = Some(Instant::now());
        schedule.last_result = Some(result.map_err(|e| e.to_string()));
        drop(schedule);
        store.schedule_changed.notify_all();
        if store.poisoned().is_some() {
            // Nothing more can be checkpointed; callers of checkpoint() get the poison error.
            return;
        }
    }
}

fn due(store: &Store, schedule: &mut Schedule) -> Option<Trigger> {
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
    if store.epochs.current().has_changes() {
        if store.budget.dirty() >= store.budget.dirty_checkpoint_bytes {
            return Some(Trigger::DirtyBytes);
        }
        let redo_bytes = store
            .wal
            .end_lsn()
            .saturating_sub(store.last_replay_start());
        if redo_bytes >= store.config.checkpoint_redo_bytes {
            return Some(Trigger::RedoBytes);
        }
    }
    if let Some(interval_ms) = store.config.checkpoint_interval_ms {
        let since = schedule.last_end.unwrap_or(store.opened_at);
        if since.elapsed() >= Duration::from_millis(interval_ms) {
            return Some(Trigger::Interval);
        }
    }
    None
}

/// Requests a checkpoint that runs even if nothing changed (a snapshot's cut). With a
/// checkpointer thread it is scheduled there; without one, a thread of ours runs it (returned,
/// to be joined).
pub(crate) fn request_forced(store: &Arc<Store>) -> Result<Option<thread::JoinHandle<()>>> {
    if store.config.background_checkpointer {
        store.request_forced_checkpoint();
        return Ok(None);
    }
    let thread_store = Arc::clone(store);
    thread::Builder::new()
        .name("deltasnap-snapshot-checkpoint".into())
        .spawn(move || {
            if let Err(error) = run(&thread_store, Trigger::Snapshot) {
                tracing::warn!(%error, "the snapshot's checkpoint failed");
            }
        })
        .map(Some)
        .map_err(|e| Error::io("spawn snapshot checkpoint thread", &store.dir, e))
}
