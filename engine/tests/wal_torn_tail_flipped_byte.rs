//! Breaks if a last record whose bytes changed after writing (a torn sector) passes its crc, or if
//! recovery cuts anywhere but at that record.

mod common;

use common::*;

#[test]
fn a_flipped_byte_in_the_last_record_is_cut_at_that_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(1 << 20);
    let (wal, _) = open(&fs, &dir, &config);
    let (lsns, end_lsn) = append_stream(&wal, 12);
    wal.sync().unwrap();
    drop(wal);

    let segment = segment_paths(&dir).pop().unwrap();
    let last_lsn = lsns[11];
    // Somewhere in the body, not the frame header.
    flip_byte(&segment, file_offset(0, last_lsn) + 8 + 3, 0x10);

    let (wal, report) = open(&fs, &dir, &config);
    let cut = report
        .tail_cut
        .expect("the corrupt record must be reported");
    assert_eq!(cut.lsn, last_lsn);
    assert_eq!(cut.bytes_dropped, end_lsn - last_lsn);
    assert!(cut.reason.contains("crc"), "{}", cut.reason);
    assert_eq!(replay_all(&wal, 0).len(), 11);
    assert_eq!(wal.append(&record(11)).unwrap(), last_lsn);
    wal.sync().unwrap();
    drop(wal);

    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!(report.tail_cut, None);
    assert_eq!(replay_all(&wal, 0).len(), 12);
}
