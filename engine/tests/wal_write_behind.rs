//! Breaks if appenders still write the redo log's full buffers themselves while a write-behind
//! thread runs (the writers' stalls the thread exists to remove, BENCHMARKS.md), if the thread
//! loses or reorders bytes, if appenders stop writing once it has stopped, or if the buffer grows
//! without bound while the disk holds a write.

mod common;

use std::time::{Duration, Instant};

use common::*;
use deltasnap::vfs::FaultKind;

fn writes_by(fs: &FaultFs, thread: &str) -> u64 {
    fs.completed_by(FaultKind::Write, thread)
}

#[test]
fn with_a_write_behind_thread_appenders_never_write_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(1 << 20);
    let (wal, _) = open(&fs, &dir, &config);
    let wal = std::sync::Arc::new(wal);
    let writer = {
        let wal = std::sync::Arc::clone(&wal);
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || wal.run_write_behind())
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wal.write_behind_running() {
        assert!(
            Instant::now() < deadline,
            "the write-behind thread never ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    // Twenty buffers' worth, paced so that the thread (which may be descheduled on a loaded
    // machine) never falls WRITE_BEHIND_SLACK buffers behind: after each full buffer, wait for it.
    let appender = {
        let wal = std::sync::Arc::clone(&wal);
        std::thread::Builder::new()
            .name("appender".into())
            .spawn(move || {
                let mut n = 0u64;
                let mut end = 0;
                while end < 20 * config.buffer_bytes_max as u64 {
                    let r = record(n);
                    end = wal.append(&r).unwrap() + r.encoded_len() as u64;
                    n += 1;
                    if end - wal.written_lsn() >= config.buffer_bytes_max as u64 {
                        while end - wal.written_lsn() >= config.buffer_bytes_max as u64 {
                            assert!(Instant::now() < deadline, "the thread wrote nothing");
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                n
            })
            .unwrap()
    };
    let appended = appender.join().unwrap();
    assert_eq!(writes_by(&fs, "appender"), 0, "an appender wrote the log");
    assert!(
        writes_by(&fs, "wal-writer") >= 19,
        "the thread wrote {} times",
        writes_by(&fs, "wal-writer")
    );

    // Everything arrives, in order, after a sync.
    wal.sync().unwrap();
    let replayed = replay_all(&wal, 0);
    assert_eq!(replayed.len() as u64, appended);
    for (n, (_, r)) in replayed.iter().enumerate() {
        assert_eq!(*r, record(n as u64), "record {n}");
    }

    // Stopped: appenders write full buffers themselves again.
    wal.stop_write_behind();
    writer.join().unwrap();
    assert!(!wal.write_behind_running());
    let mut n = appended;
    let before = wal.written_lsn();
    while wal.written_lsn() == before {
        wal.append(&record(n)).unwrap();
        n += 1;
        assert!(n < appended + 1000, "no appender wrote after the stop");
    }
}

/// A write the disk holds for a long time must not let the buffer grow without bound: past
/// `WRITE_BEHIND_SLACK` buffers, appenders wait for the write in flight (with and without a
/// write-behind thread).
#[test]
fn the_buffer_stays_bounded_while_the_disk_holds_a_write() {
    for write_behind in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let fs = std_fs();
        let config = small_config(1 << 20);
        let (wal, _) = open(&fs, &tmp.path().join("wal"), &config);
        let wal = std::sync::Arc::new(wal);
        let writer = write_behind.then(|| {
            let wal = std::sync::Arc::clone(&wal);
            std::thread::spawn(move || wal.run_write_behind())
        });
        while write_behind && !wal.write_behind_running() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every buffer write now takes 20 ms. Two appenders append 2 × 1000 records (about
        // 220 KB, 54 buffers of 4 KiB) as fast as the log takes them, so one appends while the
        // other's (or the thread's) write is held.
        fs.delay_every(FaultKind::Write, Duration::from_millis(20));
        let largest_record = (0..6).map(|n| record(n).encoded_len()).max().unwrap() as u64;
        // In flight: at most SLACK buffers and a record (what an appender takes over); behind it
        // as much again before appenders wait.
        let bound = 2
            * (deltasnap::wal::WRITE_BEHIND_SLACK as u64 * config.buffer_bytes_max as u64
                + largest_record);
        let appenders: Vec<_> = (0..2u64)
            .map(|t| {
                let wal = std::sync::Arc::clone(&wal);
                std::thread::spawn(move || {
                    let mut most_unwritten = 0;
                    for n in 0..1000 {
                        let r = record(t * 1000 + n);
                        let end = wal.append(&r).unwrap() + r.encoded_len() as u64;
                        most_unwritten = most_unwritten.max(end.saturating_sub(wal.written_lsn()));
                    }
                    most_unwritten
                })
            })
            .collect();
        let most_unwritten = appenders
            .into_iter()
            .map(|a| a.join().unwrap())
            .max()
            .unwrap();
        assert!(
            most_unwritten <= bound,
            "write-behind {write_behind}: {most_unwritten} bytes appended but not written, bound {bound}"
        );
        fs.delay_every(FaultKind::Write, Duration::ZERO);
        wal.sync().unwrap();
        assert_eq!(replay_all(&wal, 0).len(), 2000);
        if let Some(writer) = writer {
            wal.stop_write_behind();
            writer.join().unwrap();
        }
    }
}
