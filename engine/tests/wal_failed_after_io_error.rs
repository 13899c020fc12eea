//! Breaks if the log keeps accepting appends or reports syncs after an I/O error on its write or
//! fsync path (a failed fsync may have dropped dirty pages: retrying and reporting success lies).

mod common;

use std::sync::atomic::Ordering;

use common::*;
use deltasnap::Error;

#[test]
fn a_failed_fsync_fails_every_later_append_and_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = TestFs::new();
    let config = small_config(1 << 20);
    let (wal, _) = open(&fs, &dir, &config);
    append_stream(&wal, 5);
    let durable = wal.sync().unwrap();
    wal.append(&record(5)).unwrap();

    fs.counters.fail_fsync.store(true, Ordering::SeqCst);
    let err = wal.sync().unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(err.raw_os_error(), Some(5));
    assert_eq!(
        wal.durable_lsn(),
        durable,
        "a failed fsync must not move the durable LSN"
    );

    // Even with the disk healthy again, the log stays failed.
    fs.counters.fail_fsync.store(false, Ordering::SeqCst);
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
    let fs = TestFs::new();
    let mut config = small_config(1 << 20);
    config.buffer_bytes_max = 1; // every append writes
    let (wal, _) = open(&fs, &tmp.path().join("wal"), &config);
    wal.append(&record(0)).unwrap();

    fs.counters.fail_write.store(true, Ordering::SeqCst);
    let err = wal.append(&record(1)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28), "{err}");
    fs.counters.fail_write.store(false, Ordering::SeqCst);
    assert!(matches!(wal.append(&record(2)), Err(Error::WalFailed(_))));
    assert!(matches!(wal.sync(), Err(Error::WalFailed(_))));
}
