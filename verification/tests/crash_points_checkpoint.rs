//! A power cut at every I/O operation of a checkpoint (page writes, fsyncs, control file, redo
//! purge), each followed by a seeded crash and recovery: if the checkpoint's durability order
//! were wrong (C2, C3), a synced write would be lost or the store would not reopen (R1).
//! Seeded bugs that break the order are shown to be caught.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deltasnap::bugs::{self, Bug};
use deltasnap::vfs::{FaultPlan, SimFs, Vfs};
use deltasnap::{Config, Engine, PageId, PartitionId};
use deltasnap_verification::kill;

const PAGE_SIZE: u32 = 512;
const PAGES: u32 = 12;
const CRASH_SEEDS: [u64; 3] = [1, 7, 0xdead_beef];

fn config() -> Config {
    Config {
        page_size: PAGE_SIZE,
        background_checkpointer: false,
        // Small segments, so that the checkpoint's cleanup has whole segments to purge.
        wal_segment_bytes: 4 * 1024,
        memory_budget_bytes: 64 * PAGE_SIZE as u64,
        ..Config::default()
    }
}

type Pages = BTreeMap<u32, Vec<u8>>;

/// Builds the same store every time: a checkpointed base, then synced and unsynced writes.
/// Returns the engine, the history of page states (one per write) and how many are synced.
fn prepare(sim: &SimFs) -> (Engine, Vec<Pages>, usize) {
    let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
    let engine = Engine::open_on(vfs, "/store", config()).unwrap();
    let partition = PartitionId(1);
    engine.create_partition(partition).unwrap();
    let payload = engine.payload_size();
    let mut pages: Pages = BTreeMap::new();
    for i in 0..PAGES {
        engine.allocate_page(partition).unwrap();
        pages.insert(i, vec![0; payload]);
    }
    engine.checkpoint().unwrap();
    let mut history = vec![pages.clone()];
    let write = |history: &mut Vec<Pages>, pages: &mut Pages, round: u32, i: u32| {
        let bytes = [(round * 31 + i) as u8; 40];
        let offset = (i as usize * 7) % 400;
        engine
            .write(PageId::new(partition, i), offset, &bytes)
            .unwrap();
        pages.get_mut(&i).unwrap()[offset..][..40].copy_from_slice(&bytes);
        history.push(pages.clone());
    };
    for round in 0..3 {
        for i in 0..PAGES {
            write(&mut history, &mut pages, round, i);
        }
    }
    engine.sync().unwrap();
    let synced = history.len() - 1;
    for i in 0..PAGES / 2 {
        write(&mut history, &mut pages, 9, i);
    }
    (engine, history, synced)
}

fn read_pages(engine: &Engine) -> Pages {
    (0..PAGES)
        .map(|i| (i, engine.read(PageId::new(PartitionId(1), i)).unwrap()))
        .collect()
}

/// Crashes at every operation index of the checkpoint; returns the first violation found.
fn crash_at_every_checkpoint_operation() -> Result<usize, String> {
    // Count the checkpoint's operations on a clean run.
    let sim = SimFs::new();
    let (engine, _, _) = prepare(&sim);
    let first = sim.op_count();
    engine.checkpoint().unwrap();
    let last = sim.op_count();
    std::mem::forget(engine);
    let mut points = 0;
    for crash_at in first..last {
        for seed in CRASH_SEEDS {
            kill::iteration();
            let sim = SimFs::new();
            let (engine, history, synced) = prepare(&sim);
            assert_eq!(sim.op_count(), first, "the scenario is deterministic");
            sim.set_fault_plan(FaultPlan::crash_at(crash_at));
            let _ = engine.checkpoint();
            std::mem::forget(engine);
            sim.crash(seed);
            let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
            let engine = Engine::open_on(vfs, Path::new("/store"), config())
                .map_err(|e| format!("crash at op {crash_at} (seed {seed}): reopen failed: {e}"))?;
            let recovered = read_pages(&engine);
            if !history[synced..].contains(&recovered) {
                return Err(format!(
                    "crash at op {crash_at} (seed {seed}): recovered pages are no prefix of the history containing every synced write"
                ));
            }
            points += 1;
        }
    }
    Ok(points)
}

#[test]
fn crash_at_every_operation_of_a_checkpoint_loses_nothing_synced() {
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
    let points = crash_at_every_checkpoint_operation().unwrap();
    eprintln!("crash points tried: {points}");
    assert!(
        points > 20,
        "the checkpoint did some I/O: {points} crash points"
    );

    // The same check fails when the checkpoint's durability order is broken.
    for bug in [Bug::ControlBeforePageFsync, Bug::PurgeBeforeControl] {
        bugs::set(bug, true);
        let result = crash_at_every_checkpoint_operation();
        bugs::set(bug, false);
        let violation = result.expect_err(&format!("seeded bug {} must be caught", bug.name()));
        eprintln!("seeded bug {} caught: {violation}", bug.name());
    }
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`.
#[test]
fn kill_matrix() {
    kill::run_requested("crash", || {
        crash_at_every_checkpoint_operation().unwrap();
    });
}
