//! Breaks if `cancel` waits out the rate limiter: a snapshot with a low rate limit sleeps
//! `bytes / rate` seconds after a chunk, and a cancel during that sleep must end the snapshot at
//! once (`wait` returns `Error::Cancelled`, hooks closed, temporary directory gone) rather than
//! after the sleep, a minute or more at low rates.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deltasnap::bugs::Bug;
use deltasnap::snapshot::RATE_LIMIT_BYTES_PER_SEC_MIN;
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{Engine, Error, SnapshotOptions};
use deltasnap_verification::kill;
use support::{config, store_dir, tmp_dir, wait_until, History, ROOT, SNAPSHOT_NAME};

const PAGE_SIZE: u32 = 4096;
/// 12 pages of 4 KiB at 4 KiB/s: the copier's one chunk is followed by a 12 s wait.
const PAGES: u32 = 12;
/// Far below the 12 s of the rate limiter's wait, far above a cancel's own work (milliseconds
/// on SimFs).
const CANCEL_BOUND: Duration = Duration::from_secs(3);

/// Tests that switch a seeded bug on run alone (the switch is process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

fn cancel_during_the_rate_wait() {
    let sim = SimFs::new();
    let engine = Engine::open_on(Arc::new(sim.clone()), store_dir(), config(PAGE_SIZE)).unwrap();
    let mut history = History::create(&engine, 1, PAGES);
    for page in history.pages() {
        history.write(&engine, page, 1).unwrap();
    }
    engine.checkpoint().unwrap();
    let target = Path::new(ROOT).join("snapshots");
    let mut options = SnapshotOptions::new(&target, SNAPSHOT_NAME);
    options.rate_limit_bytes_per_sec = Some(RATE_LIMIT_BYTES_PER_SEC_MIN);
    options.chunk_bytes = 1 << 20;
    let snapshot = engine.snapshot(options).unwrap();
    wait_until("the first chunk copied", || {
        snapshot.progress().bytes_copied > 0
    });
    let cancelled_at = Instant::now();
    snapshot.cancel();
    let result = snapshot.wait();
    let took = cancelled_at.elapsed();
    assert!(
        took < CANCEL_BOUND,
        "cancel + wait took {took:?}: the rate limiter's wait did not listen for the cancel"
    );
    assert!(
        matches!(result, Err(Error::Cancelled)),
        "wait after cancel: {result:?}"
    );
    assert!(
        !Vfs::exists(&sim, &tmp_dir(SNAPSHOT_NAME)).unwrap(),
        "the temporary directory is left"
    );
    // The hooks are gone: a checkpoint runs without the snapshot.
    for page in history.pages() {
        history.write(&engine, page, 2).unwrap();
    }
    engine.checkpoint().unwrap();
    engine.close().unwrap();
}

#[test]
fn cancel_ends_a_rate_limited_snapshot_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    cancel_during_the_rate_wait();
}

#[test]
fn seeded_cancel_waits_rate_sleep_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    kill::assert_caught(
        "snapshot-cancel",
        Bug::CancelWaitsRateSleep,
        cancel_during_the_rate_wait,
    );
}
