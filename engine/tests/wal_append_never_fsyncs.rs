//! Breaks if `append` fsyncs (it must only buffer and write, and a roll must only switch to a
//! spare file) while the log's unnamed tail is within its bound, if `maintain` does not keep it
//! there, or if the sync that names rolled segments skips one (each must be fsynced once and get
//! its `<first-lsn>.log` name) or makes fewer records durable than it should.

mod common;

use common::*;
use deltasnap::wal::UNNAMED_SEGMENTS_MAX;

#[test]
fn appends_and_rolls_never_fsync_and_a_sync_names_every_rolled_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let (wal, _) = open(&fs, &dir, &small_config(1 << 20));
    let fsyncs = file_fsyncs(&fs);
    let (_, end_lsn) = append_stream(&wal, 500);
    assert_eq!(file_fsyncs(&fs), fsyncs, "append must never fsync");
    assert_eq!(wal.durable_lsn(), 0);
    let segment = segment_paths(&dir).pop().unwrap();
    let written = std::fs::metadata(&segment).unwrap().len();
    assert!(
        written > 32 && written < file_offset(0, end_lsn),
        "buffer_bytes_max bounds what is held back"
    );

    // Rolls without maintenance: no fsync, nothing durable, nothing named, up to the bound.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let (wal, _) = open(&fs, &dir, &small_config(2000));
    let fsyncs = file_fsyncs(&fs);
    let mut n = 0;
    while wal.segment_count() <= UNNAMED_SEGMENTS_MAX {
        wal.append(&record(n)).unwrap();
        n += 1;
    }
    assert_eq!(file_fsyncs(&fs), fsyncs, "a roll must not fsync");
    assert_eq!(wal.durable_lsn(), 0);
    assert_eq!(
        segment_paths(&dir).len(),
        1,
        "rolled segments stay unnamed until a sync"
    );
    // The next roll would pass the bound: the appender syncs first, which fsyncs every segment
    // once and names the rolled ones, then rolls.
    let segments = wal.segment_count();
    while wal.segment_count() == segments {
        wal.append(&record(n)).unwrap();
        n += 1;
    }
    assert_eq!(
        file_fsyncs(&fs) - fsyncs,
        segments as u64,
        "the bound's sync fsyncs each segment once"
    );
    let paths = segment_paths(&dir);
    assert_eq!(
        paths.len(),
        segments,
        "the bound's sync names every rolled segment"
    );
    let newest_first = first_lsn_of(paths.last().unwrap());
    assert!(newest_first > 0);
    assert!(
        wal.durable_lsn() > newest_first,
        "everything appended before the bound's sync is durable ({} <= {newest_first})",
        wal.durable_lsn()
    );
    assert!(wal.durable_lsn() < wal.end_lsn(), "the roll came after it");

    // With maintenance between appends (the engine's checkpointer thread), appends never fsync
    // and every rolled segment gets named.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let (wal, _) = open(&fs, &dir, &small_config(2000));
    let mut append_fsyncs = 0;
    for n in 0..300 {
        let before = file_fsyncs(&fs);
        wal.append(&record(n)).unwrap();
        append_fsyncs += file_fsyncs(&fs) - before;
        if wal.maintenance_due() {
            wal.maintain().unwrap();
        }
    }
    assert!(wal.segment_count() > 2 * UNNAMED_SEGMENTS_MAX);
    assert_eq!(append_fsyncs, 0, "appends fsynced with maintenance running");
    assert_eq!(
        segment_paths(&dir).len(),
        wal.segment_count(),
        "maintenance named every rolled segment"
    );
    let active_first = first_lsn_of(&segment_paths(&dir).pop().unwrap());
    assert!(wal.durable_lsn() > active_first);
}
