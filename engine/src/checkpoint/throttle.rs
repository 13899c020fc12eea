//! Writer throttling (DESIGN §3, write path step 1): before a writer enters an epoch, it waits
//! while dirty images are past the hard limit of the memory budget, asking for a checkpoint.
//!
//! It runs in the layer above the store (`Engine::write` and `Engine::allocate_page` call it
//! between their checks and the store's write path), so the store never calls up into the
//! checkpointer: without a checkpointer thread, the throttled writer runs the checkpoint itself,
//! from here.

use std::time::{Duration, Instant};

use crate::checkpoint::run::{run, Trigger};
use crate::error::{Error, Result};
use crate::store::Store;

/// Before entering an epoch: wait while dirty images are past the hard limit, asking for a
/// checkpoint. The waiting writer holds no latch and no epoch, so the checkpoint it waits for
/// can always run.
pub(crate) fn throttle(store: &Store) -> Result<()> {
    let budget = &store.budget;
    if budget.dirty() < budget.dirty_checkpoint_bytes {
        return Ok(());
    }
    store.schedule_changed.notify_all();
    if budget.dirty() < budget.dirty_throttle_bytes {
        return Ok(());
    }
    let started = Instant::now();
    store.count_writer_throttle();
    if !store.config.background_checkpointer {
        // Nobody else will checkpoint: the throttled writer does it. It holds no latch and
        // is in no epoch, so the cut it takes cannot wait on itself.
        run(store, Trigger::DirtyBytes)?;
        return Ok(());
    }
    let mut schedule = store.schedule.lock();
    while budget.dirty() >= budget.dirty_throttle_bytes {
        if let Some(reason) = store.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        if schedule.shutdown {
            break;
        }
        if schedule.requested_run <= schedule.started_run {
            schedule.requested_run = schedule.started_run + 1;
            store.schedule_changed.notify_all();
        }
        schedule = store
            .schedule_changed
            .wait_timeout(schedule, Duration::from_millis(5))
            .0;
    }
    metrics::histogram!("deltasnap_writer_throttle_seconds")
        .record(started.elapsed().as_secs_f64());
    Ok(())
}
