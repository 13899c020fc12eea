//! Breaks if some interleaving of concurrent `append` + `sync` deadlocks the group commit, lets a
//! `sync` return before an fsync covered its record, or loses the wakeup of a waiting caller;
//! also with small buffers, so that appenders and a write-behind thread write outside the log's
//! lock while syncs lead (wal module docs, "Appending").
//! Runs only under `--cfg deltasnap_shuttle` (the log's locks are then shuttle's); file I/O is the
//! real file system, which shuttle sees as plain, non-yielding calls.

#![cfg(deltasnap_shuttle)]

mod common;

use common::*;
use deltasnap::sync::{thread, Arc};
use deltasnap_verification::kill;

const THREADS: usize = 3;
const ROUNDS: usize = 2;

fn scenario() {
    scenario_with(small_config(1 << 20), false);
}

/// Buffers of 64 bytes with a write-behind thread: small records are left to the thread, a page
/// image (over `WRITE_BEHIND_SLACK` buffers) is written by its appender, and either write can be
/// in flight when a sync leads.
fn scenario_writing_behind() {
    let config = deltasnap::wal::WalConfig {
        buffer_bytes_max: 64,
        ..small_config(1 << 20)
    };
    scenario_with(config, true);
}

fn scenario_with(config: deltasnap::wal::WalConfig, write_behind: bool) {
    kill::iteration();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let (wal, _) = open(&fs, &dir, &config);
    let wal = Arc::new(wal);
    let writer = write_behind.then(|| {
        let wal = Arc::clone(&wal);
        thread::spawn(move || wal.run_write_behind())
    });
    let segment = segment_paths(&dir).pop().unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let wal = Arc::clone(&wal);
            let fs = fs.clone();
            let segment = segment.clone();
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    let record = record((t * ROUNDS + round) as u64);
                    let end = wal.append(&record).unwrap() + record.encoded_len() as u64;
                    assert!(wal.sync().unwrap() >= end);
                    assert!(fs.durable_len(&segment) >= file_offset(0, end));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    if let Some(writer) = writer {
        wal.stop_write_behind();
        writer.join().unwrap();
    }
    assert_eq!(wal.durable_lsn(), wal.end_lsn());
    assert_eq!(replay_all(&wal, 0).len(), THREADS * ROUNDS);
}

fn schedules(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn group_commit_random_schedules() {
    shuttle::check_random(scenario, 300);
}

#[test]
fn group_commit_pct_schedules() {
    shuttle::check_pct(scenario, 300, 3);
}

#[test]
fn group_commit_writing_behind_random_schedules() {
    shuttle::check_random(scenario_writing_behind, 300);
}

#[test]
fn group_commit_writing_behind_pct_schedules() {
    shuttle::check_pct(scenario_writing_behind, 300, 3);
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`, with the
/// schedule budgets of the snapshot suite (`DELTASNAP_SHUTTLE_RANDOM`, `DELTASNAP_SHUTTLE_PCT`).
#[test]
fn kill_matrix() {
    if let Some(bug) = kill::requested() {
        let random = schedules("DELTASNAP_SHUTTLE_RANDOM", 300);
        let cell = kill::cell("shuttle-random", bug, || {
            shuttle::check_random(scenario, random);
            shuttle::check_random(scenario_writing_behind, random);
        });
        println!("{cell}");
        let pct = schedules("DELTASNAP_SHUTTLE_PCT", 300);
        let cell = kill::cell("shuttle-pct", bug, || {
            shuttle::check_pct(scenario, pct, 3);
            shuttle::check_pct(scenario_writing_behind, pct, 3);
        });
        println!("{cell}");
    }
}
