//! Breaks if the merge holds more than `MERGE_BUFFER_BYTES_MAX` bytes of a partition's delta in
//! memory at once: under `DeltaPolicy::Full` a delta can approach the partition's size, so a merge
//! that loads it whole can exhaust memory. A delta several times the bound must merge with a
//! peak buffer within the bound, and the snapshot must still be exactly its cut (S1).
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deltasnap::bugs::Bug;
use deltasnap::snapshot::MERGE_BUFFER_BYTES_MAX;
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{DeltaPolicy, Engine, SnapshotOptions};
use deltasnap_verification::kill;
use support::{config, store_dir, wait_until, History, State, ROOT};

const PAGE_SIZE: u32 = 4096;
/// Every page is rewritten before the cut, so the cut checkpoint writes (and the full policy
/// captures) all of them: a delta of about 3 MiB, three times the bound.
const PAGES: u32 = 768;

/// Tests that switch a seeded bug on run alone (the switch is process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

fn merge_a_large_delta() {
    let sim = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
    let engine = Engine::open_on(Arc::clone(&vfs), store_dir(), config(PAGE_SIZE)).unwrap();
    let mut history = History::create(&engine, 1, PAGES);
    for page in history.pages() {
        history.write(&engine, page, 1).unwrap();
    }
    engine.checkpoint().unwrap();
    for page in history.pages() {
        history.write(&engine, page, 2).unwrap();
    }
    let target = Path::new(ROOT).join("snapshots");
    let mut options = SnapshotOptions::new(&target, "big-delta");
    options.delta_policy = DeltaPolicy::Full;
    let snapshot = engine.snapshot(options).unwrap();
    wait_until("the snapshot's end", || snapshot.is_finished());
    let peak = snapshot.progress().merge_buffer_bytes_peak;
    let manifest = snapshot.wait().unwrap();
    let delta_bytes = manifest.delta_pages * (PAGE_SIZE as u64 + 8);
    assert!(
        delta_bytes > 2 * MERGE_BUFFER_BYTES_MAX,
        "the test needs a delta well over the bound: {} pages, {delta_bytes} bytes",
        manifest.delta_pages
    );
    assert!(peak > 0, "the merge reported no buffer");
    assert!(
        peak <= MERGE_BUFFER_BYTES_MAX,
        "the merge held {peak} bytes of a {delta_bytes}-byte delta at once, over the bound of {MERGE_BUFFER_BYTES_MAX}"
    );

    let at_cut = history.state_at_cut(Some(manifest.cut_epoch));
    engine.close().unwrap();
    let snapshot_dir: PathBuf = target.join("big-delta");
    let restored_dir = Path::new(ROOT).join("restored");
    deltasnap::restore_on(&vfs, &snapshot_dir, &restored_dir).unwrap();
    let restored = Engine::open_on(vfs, &restored_dir, config(PAGE_SIZE)).unwrap();
    let found = State::read(&restored);
    assert!(
        found == at_cut,
        "the snapshot is not its cut: {}",
        found.first_difference(&at_cut)
    );
}

#[test]
fn a_delta_larger_than_the_bound_merges_within_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    merge_a_large_delta();
}

#[test]
fn seeded_merge_loads_whole_delta_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    kill::assert_caught(
        "snapshot-merge",
        Bug::MergeLoadsWholeDelta,
        merge_a_large_delta,
    );
}
