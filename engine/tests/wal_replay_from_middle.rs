//! Breaks if replay from a record boundary inside the log skips, repeats or reorders records, or
//! if a boundary in a later segment is not found (recovery replays from a checkpoint's LSN).

mod common;

use common::*;

#[test]
fn replay_from_any_boundary_yields_exactly_the_suffix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(1500);
    let (wal, _) = open(&fs, &dir, &config);
    let (lsns, end_lsn) = append_stream(&wal, 60);
    wal.sync().unwrap();
    assert!(
        wal.segment_count() > 3,
        "the stream must span several segments"
    );

    let all = replay_all(&wal, 0);
    assert_eq!(all.len(), 60);
    for (i, &lsn) in lsns.iter().enumerate() {
        let suffix = replay_all(&wal, lsn);
        assert_eq!(suffix, all[i..], "replay from record {i} at LSN {lsn}");
        assert_eq!(suffix[0].1, record(i as u64));
    }
    assert!(
        replay_all(&wal, end_lsn).is_empty(),
        "replay from the end applies nothing"
    );

    // The same after reopen, where the segments come from the directory.
    drop(wal);
    let (wal, _) = open(&fs, &dir, &config);
    assert_eq!(replay_all(&wal, lsns[37]), all[37..]);
}

#[test]
fn replay_stops_at_the_first_error_of_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = std_fs();
    let (wal, _) = open(&fs, &tmp.path().join("wal"), &small_config(1 << 20));
    append_stream(&wal, 10);
    let mut seen = 0;
    let err = wal
        .replay(0, |_, _| {
            seen += 1;
            if seen == 4 {
                return Err(deltasnap::Error::InvalidArgument("stop".into()));
            }
            Ok(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("stop"));
    assert_eq!(seen, 4);
}
