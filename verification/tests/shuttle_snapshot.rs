//! Shuttle over the whole engine on SimFs: two writer threads, a thread running checkpoints and a
//! snapshot (its task thread and its cut checkpoint's thread) in schedules chosen by shuttle's
//! random and PCT schedulers. If any interleaving of the write path, the cut, the hook, the
//! copier and the merge let a write of epoch `> S` into the snapshot or lost one of epoch `<= S`,
//! the restored snapshot would differ from the receipts at the cut (S1, K1, K2, S3, S4).
//!
//! Failing schedules are written to `$DELTASNAP_SHUTTLE_FAILURES` (default
//! `target-shuttle/shuttle-failures`); replay one with
//! `DELTASNAP_SHUTTLE_REPLAY=<file> RUSTFLAGS="--cfg deltasnap_shuttle" CARGO_TARGET_DIR=target-shuttle
//! cargo test --release -p deltasnap-verification --test shuttle_snapshot -- --test-threads=1`.
#![cfg(deltasnap_shuttle)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deltasnap::bugs::{self, kill, Bug};
use deltasnap::sync::{thread, Arc, Mutex};
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{Config, DeltaPolicy, Engine, PageId, PartitionId, SnapshotOptions, WriteReceipt};
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::{FailurePersistence, Runner};

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

fn scenario(policy: DeltaPolicy) {
    kill::iteration();
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
                    // The last write of both writers goes to page 0, each at its own offset: a
                    // writer the cut passed must find the other's newer image there and retry,
                    // or its write would carry the other's into an older epoch (K1, K2).
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
    let manifest = engine.snapshot(options).unwrap().wait().unwrap();
    for writer in writers {
        writer.join().unwrap();
    }
    checkpointer.join().unwrap();

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
    for (page, expected) in &reference {
        assert_eq!(
            &restored.read(*page).unwrap(),
            expected,
            "S1: page {page} of the snapshot cut at epoch {} ({policy:?}) is not the state at the cut",
            manifest.cut_epoch
        );
    }
    restored.close().unwrap();
    engine.close().unwrap();
}

fn shuttle_config() -> shuttle::Config {
    let failures = std::env::var_os("DELTASNAP_SHUTTLE_FAILURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target-shuttle/shuttle-failures")
        });
    std::fs::create_dir_all(&failures).unwrap();
    let mut config = shuttle::Config::new();
    config.stack_size = 1 << 20;
    config.failure_persistence = FailurePersistence::File(Some(failures));
    config
}

fn iterations(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn check(policy: DeltaPolicy) {
    if let Some(file) = std::env::var_os("DELTASNAP_SHUTTLE_REPLAY") {
        shuttle::replay_from_file(move || scenario(policy), file);
        return;
    }
    random(policy, iterations("DELTASNAP_SHUTTLE_RANDOM", 1000));
    pct(policy, iterations("DELTASNAP_SHUTTLE_PCT", 300));
}

fn random(policy: DeltaPolicy, schedules: usize) {
    Runner::new(RandomScheduler::new(schedules), shuttle_config()).run(move || scenario(policy));
}

fn pct(policy: DeltaPolicy, schedules: usize) {
    Runner::new(PctScheduler::new(3, schedules), shuttle_config()).run(move || scenario(policy));
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

#[test]
#[should_panic(expected = "S1")]
fn seeded_bug_skipped_phase_a_capture_is_caught() {
    bugs::set(Bug::SkipNewImageCapture, true);
    Runner::new(RandomScheduler::new(200), shuttle_config()).run(|| scenario(DeltaPolicy::Full));
}

/// Kill mode (see `deltasnap::bugs::kill`): run alone, `--exact kill_matrix`. Both policies with
/// each scheduler, at the budgets of the normal run.
#[test]
fn kill_matrix() {
    if let Some(bug) = kill::requested() {
        let policies = [DeltaPolicy::Full, DeltaPolicy::CursorAware];
        let schedules = iterations("DELTASNAP_SHUTTLE_RANDOM", 1000);
        let cell = kill::cell("shuttle-random", bug, || {
            policies.into_iter().for_each(|p| random(p, schedules))
        });
        println!("{cell}");
        let schedules = iterations("DELTASNAP_SHUTTLE_PCT", 300);
        let cell = kill::cell("shuttle-pct", bug, || {
            policies.into_iter().for_each(|p| pct(p, schedules))
        });
        println!("{cell}");
    }
}
