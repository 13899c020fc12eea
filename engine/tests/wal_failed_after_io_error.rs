//! Breaks if the log keeps accepting appends or reports syncs after an I/O error on its write or
//! fsync path (a failed fsync may have dropped dirty pages: retrying and reporting success lies).

mod common;

use common::*;
use deltasnap::vfs::{FaultError, FaultKind};
use deltasnap::Error;

#[test]
fn a_failed_fsync_fails_every_later_append_and_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(1 << 20);
    let (wal, _) = open(&fs, &dir, &config);
    append_stream(&wal, 5);
    let durable = wal.sync().unwrap();
    wal.append(&record(5)).unwrap();

    fs.fail_every(FaultKind::SyncFile, FaultError::Eio);
    let err = wal.sync().unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(err.raw_os_error(), Some(5));
    assert_eq!(
        wal.durable_lsn(),
        durable,
        "a failed fsync must not move the durable LSN"
    );

    // Even with the disk healthy again, the log stays failed.
    fs.heal(FaultKind::SyncFile);
    let err = wal.sync().unwrap_err();
    assert!(matches!(err, Error::WalFailed(_)), "{err}");
    let err = wal.append(&record(6)).unwrap_err();
    assert!(matches!(err, Error::WalFailed(_)), "{err}");
    assert!(
        err.to_string().contains("fsync redo segment"),
        "the first cause is kept: {err}"
    );
    drop(wal);

    // Reopen recovers from what reached the disk.
    let (wal, _) = open(&fs, &dir, &config);
    assert!(replay_all(&wal, 0).len() >= 5);
    wal.append(&record(7)).unwrap();
    wal.sync().unwrap();
}

#[test]
fn a_failed_buffer_write_fails_the_append_and_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = std_fs();
    let mut config = small_config(1 << 20);
    config.buffer_bytes_max = 1; // every append writes
    let (wal, _) = open(&fs, &tmp.path().join("wal"), &config);
    wal.append(&record(0)).unwrap();

    fs.fail_every(FaultKind::Write, FaultError::Enospc);
    let err = wal.append(&record(1)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28), "{err}");
    fs.heal(FaultKind::Write);
    assert!(matches!(wal.append(&record(2)), Err(Error::WalFailed(_))));
    assert!(matches!(wal.sync(), Err(Error::WalFailed(_))));
}

/// An appender writes a full buffer outside the log's lock (wal module docs, "Appending"). If
/// that write panics, the log must not be left waiting for it: later syncs and appends return
/// `WalFailed` at once instead of hanging.
#[test]
fn a_panicking_buffer_write_fails_the_log_instead_of_hanging_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = std_fs();
    let mut config = small_config(1 << 20);
    config.buffer_bytes_max = 1; // every append writes
    let (wal, _) = open(&fs, &tmp.path().join("wal"), &config);
    wal.append(&record(0)).unwrap();

    fs.panic_every(FaultKind::Write);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = wal.append(&record(1));
    }));
    assert!(panicked.is_err(), "the test file system panics on write");
    fs.heal(FaultKind::Write);

    // On a thread, so that a hang fails the test instead of stalling the suite.
    let wal = std::sync::Arc::new(wal);
    let (done, result) = std::sync::mpsc::channel();
    let syncing = std::sync::Arc::clone(&wal);
    std::thread::spawn(move || done.send(syncing.sync()).unwrap());
    let err = result
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("sync hangs on the write mark the panicked write left behind")
        .unwrap_err();
    assert!(
        matches!(&err, Error::WalFailed(reason) if reason.contains("panicked")),
        "{err}"
    );
    assert!(matches!(wal.append(&record(2)), Err(Error::WalFailed(_))));
}
