//! Breaks if `append` fsyncs (it must only buffer and write), or if a roll skips one of its fsyncs
//! (the sealed segment, then the new segment's header) or makes fewer records durable than it should.

mod common;

use common::*;

#[test]
fn appends_write_without_fsync_and_each_roll_fsyncs_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = TestFs::new();
    let (wal, _) = open(&fs, &dir, &small_config(1 << 20));
    let fsyncs = fs.file_fsyncs();
    let (_, end_lsn) = append_stream(&wal, 500);
    assert_eq!(fs.file_fsyncs(), fsyncs, "append must never fsync");
    assert_eq!(wal.durable_lsn(), 0);
    let segment = segment_paths(&dir).pop().unwrap();
    let written = std::fs::metadata(&segment).unwrap().len();
    assert!(
        written > 32 && written < file_offset(0, end_lsn),
        "buffer_bytes_max bounds what is held back"
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = TestFs::new();
    let (wal, _) = open(&fs, &dir, &small_config(2000));
    let fsyncs = fs.file_fsyncs();
    append_stream(&wal, 200);
    let rolls = wal.segment_count() as u64 - 1;
    assert!(rolls > 5);
    assert_eq!(
        fs.file_fsyncs() - fsyncs,
        2 * rolls,
        "each roll fsyncs the sealed and the new segment"
    );
    let active_first = first_lsn_of(&segment_paths(&dir).pop().unwrap());
    assert_eq!(
        wal.durable_lsn(),
        active_first,
        "a roll makes the sealed segment durable"
    );
}
