//! Breaks if appenders still write the redo log's full buffers themselves while a write-behind
//! thread runs (the writers' stalls the thread exists to remove, BENCHMARKS.md), if the thread
//! loses or reorders bytes, or if appenders stop writing once it has stopped.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn writes_by(fs: &TestFs, thread: &str) -> u64 {
    let writes = fs.counters.writes_by_thread.lock().unwrap();
    writes.get(thread).copied().unwrap_or(0)
}

#[test]
fn with_a_write_behind_thread_appenders_never_write_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = TestFs::new();
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
