//! Shuttle over the whole engine on SimFs: two writer threads, a thread running checkpoints and a
//! snapshot (its task thread and its cut checkpoint's thread) in schedules chosen by shuttle's
//! random and PCT schedulers. If any interleaving of the write path, the cut, the hook, the
//! copier and the merge let a write of epoch `> S` into the snapshot or lost one of epoch `<= S`,
//! the restored snapshot would differ from the receipts at the cut (S1, K1, K2, S3, S4). Every
//! iteration's recorded protocol events must also be a behaviour of the stateright snapshot model
//! (`deltasnap_models::snapshot_trace`): an engine step the model does not allow fails the
//! iteration, with the event and the whole trace in the message ("trace conformance").
//! A second scenario holds the copier before its first chunk while the task thread runs
//! checkpoints after `S`, so that every schedule needs the hook's old-image captures (S3).
//!
//! Failing schedules are written to `$DELTASNAP_SHUTTLE_FAILURES` (default
//! `target-shuttle/shuttle-failures`); replay one with
//! `DELTASNAP_SHUTTLE_REPLAY=<file> RUSTFLAGS="--cfg deltasnap_shuttle" CARGO_TARGET_DIR=target-shuttle
//! cargo test --release -p deltasnap-verification --test shuttle_snapshot -- --test-threads=1`.
#![cfg(deltasnap_shuttle)]

use std::collections::BTreeMap;
use std::path::Path;

use deltasnap::bugs::{self, Bug};
use deltasnap::snapshot::protocol::Capture;
use deltasnap::snapshot::trace::{self, Event};
use deltasnap::sync::{thread, Arc, Mutex};
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{Config, DeltaPolicy, Engine, PageId, PartitionId, SnapshotOptions, WriteReceipt};
use deltasnap_models::snapshot_trace::{self, Mismatch};
use deltasnap_verification::kill;
use deltasnap_verification::shuttle_runs as shuttle_support;
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::Runner;

const PAGE_SIZE: u32 = 512;
const PAGES: u32 = 6;

fn config() -> Config {
    Config {
        page_size: PAGE_SIZE,
        background_checkpointer: false,
        ..Config::default()
    }
}

type Log = Arc<Mutex<Vec<(PageId, usize, u8, WriteReceipt)>>>;

/// Writes 8 bytes `byte` at `offset` of page `index`.
fn write(engine: &Engine, log: &Log, index: u32, offset: usize, byte: u8) {
    let page = PageId::new(PartitionId(0), index);
    let receipt = engine.write(page, offset, &[byte; 8]).unwrap();
    log.lock().push((page, offset, byte, receipt));
}

/// What one iteration found: the restored snapshot against the receipts at the cut (S1), and the
/// recorded trace against the model.
struct Findings {
    s1: Result<(), String>,
    conformance: Result<(), Box<Mismatch>>,
    events: Vec<Event>,
}

/// Which findings fail an iteration.
#[derive(Clone, Copy)]
struct Checks {
    s1: bool,
    conformance: bool,
}

const ALL_CHECKS: Checks = Checks {
    s1: true,
    conformance: true,
};

/// How the copier runs against the checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Copier {
    /// As fast as the schedule lets it: both race orders of S5 occur, `S` ending first rarely.
    Free,
    /// Held before its first chunk while the task thread writes and runs a checkpoint after `S`:
    /// `S` always ends before the copy is done, and that checkpoint overwrites pages the copier
    /// has not read, so the hook must capture their old (= `S`) images from the file (S3's second
    /// half, which `Free` schedules almost never reach).
    HeldForCheckpointAfterCut,
}

fn checked_scenario(policy: DeltaPolicy, checks: Checks) {
    checked(policy, Copier::Free, checks)
}

fn checked(policy: DeltaPolicy, copier: Copier, checks: Checks) {
    let findings = scenario(policy, copier);
    if checks.s1 {
        if let Err(message) = findings.s1 {
            panic!("{message}");
        }
    }
    if checks.conformance {
        if let Err(mismatch) = findings.conformance {
            panic!("trace conformance ({policy:?}): {mismatch}");
        }
    }
}

fn scenario(policy: DeltaPolicy, copier: Copier) -> Findings {
    kill::iteration();
    trace::start();
    let sim = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(sim);
    let engine = Arc::new(Engine::open_on(Arc::clone(&vfs), "/s/store", config()).unwrap());
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    engine.create_partition(PartitionId(0)).unwrap();
    for i in 0..PAGES {
        engine.allocate_page(PartitionId(0)).unwrap();
        write(&engine, &log, i, 0, 1);
    }
    engine.checkpoint().unwrap();
    for i in 0..PAGES / 2 {
        write(&engine, &log, i, 0, 2);
    }
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            let (engine, log) = (Arc::clone(&engine), Arc::clone(&log));
            thread::spawn(move || {
                for n in 0..4u32 {
                    // Every other write of both writers goes to page 0, each writer at its own
                    // offset: a writer the cut passed must find the other's newer image there
                    // and retry, or its write would carry the other's into an older epoch (K1,
                    // K2).
                    let index = if n % 2 == 1 {
                        0
                    } else {
                        (w * 3 + n * 2) % PAGES
                    };
                    let offset = 8 * (w as usize + 1);
                    write(&engine, &log, index, offset, 10 + (w * 4 + n) as u8);
                }
            })
        })
        .collect();
    let checkpointer = {
        let engine = Arc::clone(&engine);
        thread::spawn(move || {
            for _ in 0..2 {
                engine.checkpoint().unwrap();
            }
        })
    };
    let mut options = SnapshotOptions::new("/s", "snap");
    options.delta_policy = policy;
    options.chunk_bytes = 2 * PAGE_SIZE as u64;
    if copier == Copier::HeldForCheckpointAfterCut {
        let (engine, log) = (Arc::clone(&engine), Arc::clone(&log));
        let held = Arc::new(Mutex::new(false));
        options.copy_gate = Some(Arc::new(move |_partition, first_page| {
            let mut held = held.lock();
            if first_page == 0 && !*held {
                *held = true;
                drop(held);
                // Waits for `S` (checkpoints are serial), then writes pages the copier has not
                // read yet: every one of them must be captured with its `S` content first.
                engine.checkpoint().unwrap();
                for i in (0..PAGES).step_by(2) {
                    write(&engine, &log, i, 32, 0x70 + i as u8);
                }
                engine.checkpoint().unwrap();
            }
        }));
    }
    let manifest = engine.snapshot(options).unwrap().wait().unwrap();
    for writer in writers {
        writer.join().unwrap();
    }
    checkpointer.join().unwrap();
    let events = trace::take();
    let conformance = snapshot_trace::check(&events, policy)
        .map(|_| ())
        .map_err(Box::new);

    let payload = engine.payload_size();
    let mut reference: BTreeMap<PageId, Vec<u8>> = (0..PAGES)
        .map(|i| (PageId::new(PartitionId(0), i), vec![0; payload]))
        .collect();
    let mut writes = log.lock().clone();
    writes.sort_by_key(|(_, _, _, receipt)| receipt.lsn);
    for (page, offset, byte, receipt) in &writes {
        if receipt.epoch <= manifest.cut_epoch {
            reference.get_mut(page).unwrap()[*offset..][..8].fill(*byte);
        }
    }
    deltasnap::restore_on(&vfs, Path::new("/s/snap"), Path::new("/s/restored")).unwrap();
    let restored = Engine::open_on(Arc::clone(&vfs), "/s/restored", config()).unwrap();
    let s1 = reference
        .iter()
        .map(|(page, expected)| (page, restored.read(*page).unwrap(), expected))
        .find(|(_, found, expected)| found != *expected)
        .map_or(Ok(()), |(page, found, expected)| {
            Err(format!(
                "S1: page {page} of the snapshot cut at epoch {} ({policy:?}) is not the state at \
                 the cut: it starts {:?}, the state at the cut {:?}",
                manifest.cut_epoch,
                &found[..24],
                &expected[..24]
            ))
        });
    restored.close().unwrap();
    engine.close().unwrap();
    Findings {
        s1,
        conformance,
        events,
    }
}

fn check(policy: DeltaPolicy) {
    let _recording = trace::exclusive();
    let run = move || checked_scenario(policy, ALL_CHECKS);
    if let Some(file) = std::env::var_os("DELTASNAP_SHUTTLE_REPLAY") {
        shuttle::replay_from_file(run, file);
        return;
    }
    random(
        policy,
        shuttle_support::iterations("DELTASNAP_SHUTTLE_RANDOM", 1000),
    );
    pct(
        policy,
        shuttle_support::iterations("DELTASNAP_SHUTTLE_PCT", 300),
    );
}

fn random(policy: DeltaPolicy, schedules: usize) {
    Runner::new(RandomScheduler::new(schedules), shuttle_support::config())
        .run(move || checked_scenario(policy, ALL_CHECKS));
}

fn pct(policy: DeltaPolicy, schedules: usize) {
    Runner::new(PctScheduler::new(3, schedules), shuttle_support::config())
        .run(move || checked_scenario(policy, ALL_CHECKS));
}

#[test]
fn snapshot_under_writers_and_checkpoints_full_policy() {
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
    check(DeltaPolicy::Full);
}

#[test]
fn snapshot_under_writers_and_checkpoints_cursor_aware_policy() {
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
    check(DeltaPolicy::CursorAware);
}

fn check_held_copier(policy: DeltaPolicy) {
    let _recording = trace::exclusive();
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
    let run = move || checked(policy, Copier::HeldForCheckpointAfterCut, ALL_CHECKS);
    if let Some(file) = std::env::var_os("DELTASNAP_SHUTTLE_REPLAY") {
        shuttle::replay_from_file(run, file);
        return;
    }
    let schedules = shuttle_support::iterations("DELTASNAP_SHUTTLE_RANDOM", 1000) / 4;
    Runner::new(
        RandomScheduler::new(schedules.max(1)),
        shuttle_support::config(),
    )
    .run(run);
}

#[test]
fn snapshot_with_checkpoints_after_the_cut_before_the_copy_full_policy() {
    check_held_copier(DeltaPolicy::Full);
}

#[test]
fn snapshot_with_checkpoints_after_the_cut_before_the_copy_cursor_aware_policy() {
    check_held_copier(DeltaPolicy::CursorAware);
}

/// The hook drops the old images it must capture after `S` ended: pages the held copier reads
/// later carry post-`S` content (S1, S3).
#[test]
#[should_panic(expected = "S1")]
fn seeded_bug_skipped_old_image_capture_is_caught() {
    let _recording = trace::exclusive();
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
    bugs::set(Bug::SkipOldImageCapture, true);
    let s1_only = Checks {
        s1: true,
        conformance: false,
    };
    Runner::new(RandomScheduler::new(200), shuttle_support::config()).run(move || {
        checked(
            DeltaPolicy::Full,
            Copier::HeldForCheckpointAfterCut,
            s1_only,
        )
    });
}

#[test]
#[should_panic(expected = "S1")]
fn seeded_bug_skipped_phase_a_capture_is_caught() {
    let _recording = trace::exclusive();
    bugs::set(Bug::SkipNewImageCapture, true);
    let s1_only = Checks {
        s1: true,
        conformance: false,
    };
    Runner::new(RandomScheduler::new(200), shuttle_support::config())
        .run(move || checked_scenario(DeltaPolicy::Full, s1_only));
}

/// The hook drops the captures it decides while `S` writes: the recorded trace has a decision
/// to capture and no append, which the model does not allow. (S1 catches the same bug only when
/// the dropped image is not also copied; conformance catches every schedule that makes a capture.)
#[test]
#[should_panic(expected = "trace conformance")]
fn seeded_bug_skipped_phase_a_capture_is_caught_by_trace_conformance() {
    conformance_only(Bug::SkipNewImageCapture, 200);
}

fn conformance_only(bug: Bug, iterations: usize) {
    let _recording = trace::exclusive();
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
    bugs::set(bug, true);
    let conformance_only = Checks {
        s1: false,
        conformance: true,
    };
    let run = move || checked_scenario(DeltaPolicy::Full, conformance_only);
    if let Some(file) = std::env::var_os("DELTASNAP_SHUTTLE_REPLAY") {
        shuttle::replay_from_file(run, file);
        return;
    }
    Runner::new(RandomScheduler::new(iterations), shuttle_support::config()).run(run);
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`. Both policies with
/// each scheduler, with every check (S1 and trace conformance), at the budgets of the normal run.
#[test]
fn kill_matrix() {
    if let Some(bug) = kill::requested() {
        let _recording = trace::exclusive();
        let policies = [DeltaPolicy::Full, DeltaPolicy::CursorAware];
        let schedules = shuttle_support::iterations("DELTASNAP_SHUTTLE_RANDOM", 1000);
        println!(
            "{}",
            kill::cell("shuttle-random", bug, || {
                policies.into_iter().for_each(|p| random(p, schedules))
            })
        );
        let schedules = shuttle_support::iterations("DELTASNAP_SHUTTLE_PCT", 300);
        println!(
            "{}",
            kill::cell("shuttle-pct", bug, || {
                policies.into_iter().for_each(|p| pct(p, schedules))
            })
        );
    }
}

/// What the schedules exercise, and how often each check catches the two capture bugs, over the
/// same seeded schedules. Run with `-- --ignored --nocapture`; the seed is printed and read back
/// from `DELTASNAP_SHUTTLE_SEED`.
#[test]
#[ignore = "measurement"]
fn measure_which_check_catches_the_capture_bugs() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// iterations, S1 fails, conformance fails, only conformance, only S1, S ended before the
    /// copy was done, a new-image capture decided, an old-image capture decided.
    static COUNTS: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];
    /// Nanoseconds spent checking conformance, and events checked.
    static CHECK_NANOS: AtomicUsize = AtomicUsize::new(0);
    static EVENTS: AtomicUsize = AtomicUsize::new(0);
    let _recording = trace::exclusive();
    let seed = std::env::var("DELTASNAP_SHUTTLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let random = shuttle_support::iterations("DELTASNAP_SHUTTLE_RANDOM", 1000);
    for bug in [
        None,
        Some(Bug::SkipNewImageCapture),
        Some(Bug::SkipOldImageCapture),
    ] {
        for policy in [DeltaPolicy::Full, DeltaPolicy::CursorAware] {
            for bug in Bug::ALL {
                bugs::set(bug, false);
            }
            if let Some(bug) = bug {
                bugs::set(bug, true);
            }
            for counter in COUNTS.iter().chain([&CHECK_NANOS, &EVENTS]) {
                counter.store(0, Ordering::SeqCst);
            }
            let started = std::time::Instant::now();
            Runner::new(
                RandomScheduler::new_from_seed(seed, random),
                shuttle_support::config(),
            )
            .run(move || {
                let findings = scenario(policy, Copier::Free);
                // The check again, timed (the scenario's own run costs the same).
                let checking = std::time::Instant::now();
                let again = snapshot_trace::check(&findings.events, policy).is_ok();
                CHECK_NANOS.fetch_add(checking.elapsed().as_nanos() as usize, Ordering::SeqCst);
                EVENTS.fetch_add(findings.events.len(), Ordering::SeqCst);
                assert_eq!(again, findings.conformance.is_ok());
                let (s1, conformance) = (findings.s1.is_err(), findings.conformance.is_err());
                let position = |wanted: fn(&Event) -> bool| findings.events.iter().position(wanted);
                let cut_ended = position(|e| matches!(e, Event::CheckpointEnd { .. }));
                let copy_done = position(|e| matches!(e, Event::CopyDone { .. }));
                let decided = |capture| {
                    findings.events.iter().any(
                        |e| matches!(e, Event::HookDecided { capture: c, .. } if *c == capture),
                    )
                };
                let found = [
                    true,
                    s1,
                    conformance,
                    conformance && !s1,
                    s1 && !conformance,
                    cut_ended < copy_done,
                    decided(Capture::NewImage),
                    decided(Capture::OldImageFromFile),
                ];
                for (counter, found) in COUNTS.iter().zip(found) {
                    counter.fetch_add(found as usize, Ordering::SeqCst);
                }
            });
            let [iterations, s1, conformance, only_conformance, only_s1, cut_first, new, old] =
                COUNTS.each_ref().map(|c| c.load(Ordering::SeqCst));
            println!(
                "seed {seed} bug {} {policy:?}: {iterations} iterations; S1 fails in {s1}, \
                 conformance in {conformance} (only conformance {only_conformance}, only S1 \
                 {only_s1}); S ends before the copy is done in {cut_first}; new-image capture \
                 decided in {new}, old-image capture in {old}; {:.1} events per trace, the \
                 check takes {:.1} us per trace; {:.2} s in all",
                bug.map_or("none", Bug::name),
                EVENTS.load(Ordering::SeqCst) as f64 / iterations as f64,
                CHECK_NANOS.load(Ordering::SeqCst) as f64 / iterations as f64 / 1000.0,
                started.elapsed().as_secs_f64(),
            );
        }
    }
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
}
