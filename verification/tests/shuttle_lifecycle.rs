//! Shuttle over the engine's lifecycle calls racing each other (issue 11): a writer, a second
//! writer on a partition a third thread drops, a checkpointing thread, a snapshot that may be
//! cancelled, and `close`, all at once on SimFs, in schedules chosen by shuttle's random and PCT
//! schedulers (the lifecycle simulation tier explores the same races with OS threads, by seed;
//! here the schedules themselves are explored). Shuttle fails a schedule that deadlocks.
//!
//! Checks, after every thread joined: `close` returned `Ok`; the store reopens (its lock was
//! released); every write that returned `Ok` is in it, since `close` waits for the calls in
//! flight and then makes everything durable (L1, L2, R1); a partition whose drop returned `Ok` is
//! gone; no call failed with anything but the errors its race allows.
//!
//! Replay a failing schedule with `DELTASNAP_SHUTTLE_REPLAY=<file>` (see `shuttle_snapshot.rs`).
#![cfg(deltasnap_shuttle)]

use deltasnap::bugs::{self, Bug};
use deltasnap::sync::{thread, Arc, Mutex};
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{Config, Engine, Error, PageId, PartitionId, SnapshotOptions};
use deltasnap_verification::kill;
use deltasnap_verification::shuttle_runs as shuttle_support;
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::Runner;

const PAGE_SIZE: u32 = 512;
const PAGES: u32 = 3;
const KEPT: PartitionId = PartitionId(0);
const DROPPED: PartitionId = PartitionId(1);

fn config() -> Config {
    Config {
        page_size: PAGE_SIZE,
        background_checkpointer: false,
        ..Config::default()
    }
}

fn scenario() {
    kill::iteration();
    let vfs: Arc<dyn Vfs> = Arc::new(SimFs::new());
    let engine = Arc::new(Engine::open_on(Arc::clone(&vfs), "/s/store", config()).unwrap());
    for partition in [KEPT, DROPPED] {
        engine.create_partition(partition).unwrap();
        for _ in 0..PAGES {
            engine.allocate_page(partition).unwrap();
        }
    }
    engine.checkpoint().unwrap();

    // One writer per partition, so that a page's last acknowledged write is its value.
    let acked: Arc<Mutex<Vec<(u32, u8)>>> = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (engine, acked) = (Arc::clone(&engine), Arc::clone(&acked));
        thread::spawn(move || {
            for n in 0..4u8 {
                let index = n as u32 % PAGES;
                match engine.write(PageId::new(KEPT, index), 0, &[n + 1; 8]) {
                    Ok(_) => acked.lock().push((index, n + 1)),
                    Err(Error::Closed) => return,
                    Err(other) => panic!("write racing close: {other}"),
                }
            }
        })
    };
    let doomed_writer = {
        let engine = Arc::clone(&engine);
        thread::spawn(move || {
            for n in 0..2u8 {
                match engine.write(PageId::new(DROPPED, n as u32), 0, &[0xd0 + n; 8]) {
                    Ok(_) | Err(Error::Closed | Error::NoSuchPartition(_)) => {}
                    Err(other) => panic!("write racing a drop and close: {other}"),
                }
            }
        })
    };
    let dropper = {
        let engine = Arc::clone(&engine);
        thread::spawn(move || match engine.drop_partition(DROPPED) {
            Ok(()) => true,
            Err(Error::Closed) => false,
            Err(other) => panic!("drop racing close: {other}"),
        })
    };
    let checkpointer = {
        let engine = Arc::clone(&engine);
        thread::spawn(move || match engine.checkpoint() {
            Ok(_) | Err(Error::Closed) => {}
            Err(other) => panic!("checkpoint racing close: {other}"),
        })
    };
    let snapshotter = {
        let engine = Arc::clone(&engine);
        thread::spawn(move || {
            let mut options = SnapshotOptions::new("/s", "snap");
            options.chunk_bytes = PAGE_SIZE as u64;
            let handle = match engine.snapshot(options) {
                Ok(handle) => handle,
                Err(Error::Closed) => return,
                Err(other) => panic!("snapshot racing close: {other}"),
            };
            handle.cancel();
            match handle.wait() {
                // Published before the cancel reached it, or cancelled (also by close).
                Ok(_) | Err(Error::Cancelled) => {}
                Err(other) => panic!("a cancelled snapshot racing close: {other}"),
            }
        })
    };
    let closed = engine.close();
    writer.join().unwrap();
    doomed_writer.join().unwrap();
    let dropped = dropper.join().unwrap();
    checkpointer.join().unwrap();
    snapshotter.join().unwrap();
    closed.unwrap_or_else(|error| panic!("close racing every other call: {error}"));

    let reopened = Engine::open_on(vfs, "/s/store", config())
        .unwrap_or_else(|error| panic!("reopen after close: {error}"));
    let mut expected = [0u8; PAGES as usize];
    for (index, byte) in acked.lock().iter() {
        expected[*index as usize] = *byte;
    }
    for (index, byte) in expected.iter().enumerate() {
        let found = reopened.read(PageId::new(KEPT, index as u32)).unwrap()[0];
        assert_eq!(
            found, *byte,
            "R1: page {index}'s last write that returned Ok before close ({byte}) is not in the \
             reopened store (found {found})"
        );
    }
    let exists = reopened.partitions().iter().any(|(id, _)| *id == DROPPED);
    assert!(
        !(dropped && exists),
        "a partition whose drop returned Ok before close is back"
    );
    reopened.close().unwrap();
}

fn random(schedules: usize) {
    Runner::new(RandomScheduler::new(schedules), shuttle_support::config()).run(scenario);
}

fn pct(schedules: usize) {
    Runner::new(PctScheduler::new(3, schedules), shuttle_support::config()).run(scenario);
}

#[test]
fn lifecycle_calls_racing_close() {
    for bug in Bug::ALL {
        bugs::set(bug, false);
    }
    if let Some(file) = std::env::var_os("DELTASNAP_SHUTTLE_REPLAY") {
        shuttle::replay_from_file(scenario, file);
        return;
    }
    random(shuttle_support::iterations("DELTASNAP_SHUTTLE_RANDOM", 1000) / 2);
    pct(shuttle_support::iterations("DELTASNAP_SHUTTLE_PCT", 300) / 2);
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`.
#[test]
fn kill_matrix() {
    if let Some(bug) = kill::requested() {
        let schedules = shuttle_support::iterations("DELTASNAP_SHUTTLE_RANDOM", 1000) / 2;
        println!(
            "{}",
            kill::cell("shuttle-random", bug, || random(schedules))
        );
        let schedules = shuttle_support::iterations("DELTASNAP_SHUTTLE_PCT", 300) / 2;
        println!("{}", kill::cell("shuttle-pct", bug, || pct(schedules)));
    }
}
