//! Breaks if rolling segments loses, duplicates or misplaces records, lets a segment grow past
//! `segment_bytes_max`, or if reopen does not continue the same LSN stream.

mod common;

use common::*;

#[test]
fn many_appends_across_small_segments_survive_reopen_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let segment_bytes_max = 3000;
    let config = small_config(segment_bytes_max);

    let (wal, _) = open(&fs, &dir, &config);
    let (first_lsns, end_lsn) = append_stream(&wal, 400);
    wal.sync().unwrap();
    let segments = wal.segment_count();
    drop(wal);

    let paths = segment_paths(&dir);
    assert!(segments > 10, "only {segments} segments");
    assert_eq!(paths.len(), segments);
    for path in &paths {
        let len = std::fs::metadata(path).unwrap().len();
        assert!(
            len <= segment_bytes_max,
            "{} is {len} bytes",
            path.display()
        );
    }

    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!(
        (report.end_lsn, report.segments, report.tail_cut),
        (end_lsn, segments, None)
    );
    let replayed = replay_all(&wal, 0);
    let expected: Vec<_> = first_lsns
        .iter()
        .enumerate()
        .map(|(i, &lsn)| (lsn, record(i as u64)))
        .collect();
    assert_eq!(replayed, expected);

    // Appending after reopen continues the stream at the end.
    let next = wal.append(&record(400)).unwrap();
    assert_eq!(next, end_lsn);
    wal.sync().unwrap();
    drop(wal);
    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!(report.tail_cut, None);
    let replayed = replay_all(&wal, 0);
    assert_eq!(replayed.len(), 401);
    assert_eq!(replayed[400], (end_lsn, record(400)));
}
