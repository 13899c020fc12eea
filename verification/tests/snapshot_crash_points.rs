//! A power cut at every I/O operation of a snapshot (marker, cut checkpoint with its delta
//! captures, writes and a checkpoint during the copy, copy, merge, publish, cleanup), each
//! followed by a seeded crash and reopen: if the publish order were wrong (a name before a durable
//! manifest) a snapshot that does not verify would appear under its final name; if the marker
//! cleanup were wrong a temporary directory or marker would outlive the reopen; if the snapshot
//! disturbed the checkpoint's durability, a synced write would be lost (R1).
//!
//! Replay one point with `DELTASNAP_CRASH_POINT=<operation index>:<seed>`.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::path::Path;
use std::sync::Arc;

use deltasnap::vfs::{FaultPlan, SimFs, Vfs};
use deltasnap::{Engine, JobKind, PageId};
use deltasnap_verification::fault_fs::FaultFs;
use deltasnap_verification::kill;
use support::{
    config, final_dir, marker, store_dir, target_dir, tmp_dir, wait_until, History, State, ROOT,
    SNAPSHOT_NAME, SNAPSHOT_THREAD,
};

const PAGE_SIZE: u32 = 512;
const PARTITIONS: u32 = 2;
const PAGES: u32 = 8;
const CRASH_SEEDS: [u64; 3] = [1, 7, 0xdead_beef];

/// What one run did before the crash.
struct Run {
    sim: SimFs,
    history: History,
    /// Writes recorded when the last successful `sync` returned.
    synced: usize,
    /// Writes recorded when the snapshot was requested (all of them are in its cut).
    at_cut: usize,
    /// Operation indices of the snapshot: from `engine.snapshot` to `wait` returning.
    ops: std::ops::Range<u64>,
    published: bool,
}

/// Writes `pages` until the first error (after a power cut every write fails).
fn write_until_error(
    engine: &Engine,
    history: &mut History,
    pages: impl Iterator<Item = PageId>,
    round: u8,
) {
    for page in pages {
        if history.write(engine, page, round).is_err() {
            return;
        }
    }
}

/// The scenario, the same every time: a store with a checkpointed base and dirty even pages;
/// a snapshot whose task thread is held (by `FaultFs`) until its cut checkpoint has ended and the
/// test thread has written the odd pages, synced, checkpointed (the hook captures old images)
/// and written again without a sync (the test also makes the temporary directory's entries
/// durable at that point, as a real file system may). Only one thread does I/O at a time, so operation indices
/// are the same in every run. With `crash_at`, the power is cut at that operation.
fn run(crash_at: Option<u64>) -> Run {
    let sim = SimFs::new();
    let fs = FaultFs::new(Arc::new(sim.clone()));
    let engine = Engine::open_on(Arc::new(fs.clone()), store_dir(), config(PAGE_SIZE)).unwrap();
    sim.create_dir_all(&target_dir()).unwrap();
    for dir in [target_dir().as_path(), Path::new(ROOT), Path::new("/")] {
        sim.sync_dir(dir).unwrap();
    }
    let mut history = History::create(&engine, PARTITIONS, PAGES);
    history.put(&engine, b"schema", b"v1").unwrap();
    let all = history.pages();
    write_until_error(&engine, &mut history, all.iter().copied(), 1);
    engine.checkpoint().unwrap();
    let even = all.iter().copied().filter(|p| p.index % 2 == 0);
    write_until_error(&engine, &mut history, even, 2);
    engine.sync().unwrap();
    let mut synced = history.len();
    let at_cut = history.len();
    let checkpoint_jobs_before = engine
        .jobs()
        .iter()
        .filter(|job| job.kind == JobKind::Checkpoint)
        .map(|job| job.id)
        .max()
        .unwrap_or(0);

    let first = sim.op_count();
    if let Some(crash_at) = crash_at {
        sim.set_fault_plan(FaultPlan::crash_at(crash_at));
    }
    fs.hold_thread(SNAPSHOT_THREAD);
    let mut options = deltasnap::SnapshotOptions::new(target_dir(), SNAPSHOT_NAME);
    options.chunk_bytes = 3 * PAGE_SIZE as u64;
    let result = match engine.snapshot(options) {
        Ok(snapshot) => {
            wait_until("the cut checkpoint", || {
                engine.jobs().iter().any(|job| {
                    job.kind == JobKind::Checkpoint
                        && job.id > checkpoint_jobs_before
                        && job.duration.is_some()
                })
            });
            // A real file system may persist a `mkdir` nobody synced; SimFs never does, so
            // the temporary directory would vanish by itself in the crash. Make it durable, so
            // that the marker-driven cleanup at open has something to remove.
            let tmp = tmp_dir(SNAPSHOT_NAME);
            for dir in [
                target_dir(),
                tmp.clone(),
                tmp.join("partitions"),
                tmp.join("deltas"),
            ] {
                let _ = sim.sync_dir(&dir);
            }
            let odd = all.iter().copied().filter(|p| p.index % 2 == 1);
            write_until_error(&engine, &mut history, odd, 3);
            if engine.sync().is_ok() {
                synced = history.len();
            }
            let _ = engine.checkpoint();
            let some = all.iter().copied().filter(|p| p.index % 3 == 0);
            write_until_error(&engine, &mut history, some, 4);
            fs.release();
            snapshot.wait()
        }
        Err(error) => {
            fs.release();
            Err(error)
        }
    };
    let last = sim.op_count();
    if crash_at.is_none() {
        let manifest = result
            .as_ref()
            .expect("the snapshot publishes without a crash");
        assert!(manifest.delta_pages > 0, "the hook captured nothing");
    }
    if let Some(crash_at) = crash_at {
        assert_eq!(
            sim.power_cut_at(),
            Some(crash_at),
            "the scenario is deterministic: the power cut lands at its operation"
        );
    }
    // The engine is gone with the power; its destructor must not touch the restarted disk.
    std::mem::forget(engine);
    Run {
        sim,
        history,
        synced,
        at_cut,
        ops: first..last,
        published: result.is_ok(),
    }
}

#[derive(Debug, Default)]
struct Tally {
    points: u64,
    published: u64,
    unfinished_removed: u64,
}

/// Crashes `run` at `crash_at` with `seed`, reopens, and checks the module doc's properties.
fn crash_and_check(crash_at: u64, seed: u64, tally: &mut Tally) -> Result<(), String> {
    kill::iteration();
    let run = run(Some(crash_at));
    let fail = |what: String| {
        format!("crash at op {crash_at} seed {seed}: {what} (replay with DELTASNAP_CRASH_POINT={crash_at}:{seed})")
    };
    run.sim.crash(seed);
    let vfs: Arc<dyn Vfs> = Arc::new(run.sim.clone());
    let engine = Engine::open_on(Arc::clone(&vfs), store_dir(), config(PAGE_SIZE))
        .map_err(|e| fail(format!("reopen failed: {e}")))?;
    tally.unfinished_removed += engine.recovery_report().unfinished_snapshots_removed.len() as u64;

    // R1: every synced write, and a prefix of the history.
    let recovered = State::read(&engine);
    if !(run.synced..=run.history.len()).any(|n| run.history.state_after(n) == recovered) {
        return Err(fail(format!(
            "the store is no prefix of the history holding the {} synced writes",
            run.synced
        )));
    }

    // Nothing half-made is left, and a snapshot under the final name is a whole one.
    for path in [tmp_dir(SNAPSHOT_NAME), marker(SNAPSHOT_NAME)] {
        if vfs.exists(&path).unwrap() {
            return Err(fail(format!("{} survived the reopen", path.display())));
        }
    }
    let published = vfs.exists(&final_dir(SNAPSHOT_NAME)).unwrap();
    if run.published && !published {
        return Err(fail(
            "wait() returned the manifest but the snapshot did not survive the crash".into(),
        ));
    }
    if published {
        tally.published += 1;
        let report = deltasnap::verify_snapshot_on(&vfs, &final_dir(SNAPSHOT_NAME))
            .map_err(|e| fail(format!("verify failed: {e}")))?;
        if !report.is_ok() {
            return Err(fail(format!(
                "the snapshot under its final name does not verify: {:?}",
                report.problems
            )));
        }
        let restored_dir = Path::new(ROOT).join("restored");
        deltasnap::restore_on(&vfs, &final_dir(SNAPSHOT_NAME), &restored_dir)
            .map_err(|e| fail(format!("restore failed: {e}")))?;
        let restored = Engine::open_on(Arc::clone(&vfs), &restored_dir, config(PAGE_SIZE))
            .map_err(|e| fail(format!("the restored store does not open: {e}")))?;
        if State::read(&restored) != run.history.state_after(run.at_cut) {
            return Err(fail("the snapshot is not the state at its cut".into()));
        }
    } else {
        // The name is free again and a new snapshot of it works.
        let manifest = engine
            .snapshot(deltasnap::SnapshotOptions::new(target_dir(), SNAPSHOT_NAME))
            .and_then(|snapshot| snapshot.wait())
            .map_err(|e| fail(format!("a snapshot after the reopen failed: {e}")))?;
        let report = deltasnap::verify_snapshot_on(&vfs, &final_dir(SNAPSHOT_NAME)).unwrap();
        if !report.is_ok() || manifest.partitions.len() != PARTITIONS as usize {
            return Err(fail(format!(
                "the snapshot after the reopen does not verify: {:?}",
                report.problems
            )));
        }
    }
    drop(engine);
    tally.points += 1;
    Ok(())
}

fn replay_point() -> Option<(u64, u64)> {
    let text = std::env::var("DELTASNAP_CRASH_POINT").ok()?;
    let (op, seed) = text
        .split_once(':')
        .expect("DELTASNAP_CRASH_POINT=<operation index>:<seed>");
    Some((op.parse().unwrap(), seed.parse().unwrap()))
}

#[test]
fn crash_at_every_operation_of_a_snapshot_leaves_a_whole_snapshot_or_none() {
    let mut tally = Tally::default();
    if let Some((crash_at, seed)) = replay_point() {
        crash_and_check(crash_at, seed, &mut tally).unwrap();
        return;
    }
    let ops = sweep(&mut tally).unwrap_or_else(|violation| panic!("{violation}"));
    eprintln!(
        "snapshot operations {ops:?}: crash points tried {} ({} operations x {} seeds), snapshot published in {}, unfinished snapshots removed at reopen {}",
        tally.points,
        ops.end - ops.start,
        CRASH_SEEDS.len(),
        tally.published,
        tally.unfinished_removed
    );
}

/// A clean run, then a crash at each of its snapshot's operations with each seed; returns the
/// operations, or the first violation.
fn sweep(tally: &mut Tally) -> Result<std::ops::Range<u64>, String> {
    let clean = run(None);
    let ops = clean.ops.clone();
    assert!(
        ops.end - ops.start > 50,
        "the snapshot did some I/O: {ops:?}"
    );
    for crash_at in ops.clone() {
        for seed in CRASH_SEEDS {
            crash_and_check(crash_at, seed, tally)?;
        }
    }
    Ok(ops)
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`.
#[test]
fn kill_matrix() {
    kill::run_requested("crash", || {
        sweep(&mut Tally::default()).unwrap();
    });
}
