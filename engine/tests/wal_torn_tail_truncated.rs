//! Breaks if recovery does not cut a last segment that ends mid-record (a crash during a write),
//! misreports where and how much it cut, or leaves the log unable to append and reopen cleanly.

mod common;

use common::*;

#[test]
fn a_record_cut_short_is_dropped_reported_and_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(1 << 20);
    let (wal, _) = open(&fs, &dir, &config);
    let (lsns, end_lsn) = append_stream(&wal, 20);
    wal.sync().unwrap();
    drop(wal);

    let segment = segment_paths(&dir).pop().unwrap();
    let torn_lsn = lsns[19];
    let kept_bytes_of_torn = 5;
    let torn_len = file_offset(0, torn_lsn) + kept_bytes_of_torn;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(torn_len)
        .unwrap();

    let (wal, report) = open(&fs, &dir, &config);
    let cut = report.tail_cut.expect("the torn record must be reported");
    assert_eq!(cut.segment, segment);
    assert_eq!(cut.lsn, torn_lsn);
    assert_eq!(cut.bytes_dropped, kept_bytes_of_torn);
    assert_eq!(report.end_lsn, torn_lsn);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        file_offset(0, torn_lsn)
    );
    assert_eq!(replay_all(&wal, 0).len(), 19);

    // The next append reuses the cut LSN and is durable.
    assert_eq!(wal.append(&record(99)).unwrap(), torn_lsn);
    wal.sync().unwrap();
    drop(wal);
    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!(
        report.tail_cut, None,
        "a clean log must reopen without a cut"
    );
    let replayed = replay_all(&wal, 0);
    assert_eq!(replayed.len(), 20);
    assert_eq!(replayed[19], (torn_lsn, record(99)));
    assert!(report.end_lsn < end_lsn);
}

#[test]
fn a_frame_header_cut_short_is_a_tail_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(1 << 20);
    let (wal, _) = open(&fs, &dir, &config);
    let (_, end_lsn) = append_stream(&wal, 3);
    wal.sync().unwrap();
    drop(wal);

    // Three stray bytes past the last record: less than a frame header.
    let segment = segment_paths(&dir).pop().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(file_offset(0, end_lsn) + 3)
        .unwrap();
    let (_, report) = open(&fs, &dir, &config);
    let cut = report.tail_cut.unwrap();
    assert_eq!((cut.lsn, cut.bytes_dropped), (end_lsn, 3));
}
