//! Breaks if `purge_before` deletes a segment that still holds records at or after the LSN, the
//! active segment, or leaves the log unable to replay from that LSN (now or after reopen).

mod common;

use common::*;
use deltasnap::Error;

#[test]
fn purge_deletes_only_whole_segments_before_the_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(2500);
    let (wal, _) = open(&fs, &dir, &config);
    let (lsns, end_lsn) = append_stream(&wal, 150);
    wal.sync().unwrap();
    let before = segment_paths(&dir);
    assert!(before.len() > 6);
    let all = replay_all(&wal, 0);

    // An LSN strictly inside the fourth segment: the first three go, the fourth stays.
    let fourth_first = first_lsn_of(&before[3]);
    let index = lsns.iter().position(|&lsn| lsn > fourth_first).unwrap();
    let purge_lsn = lsns[index];
    assert_eq!(wal.purge_before(purge_lsn).unwrap(), 3);
    assert_eq!(segment_paths(&dir), before[3..]);
    assert_eq!(wal.segment_count(), before.len() - 3);
    assert_eq!(replay_all(&wal, purge_lsn), all[index..]);

    // An LSN exactly at a segment start deletes the segment before it only.
    assert_eq!(wal.purge_before(first_lsn_of(&before[5])).unwrap(), 2);
    assert_eq!(segment_paths(&dir), before[5..]);
    assert_eq!(
        wal.purge_before(first_lsn_of(&before[5])).unwrap(),
        0,
        "purge is idempotent"
    );

    // Replay from before the oldest retained segment is a clear error.
    let err = wal.replay(purge_lsn, |_, _| Ok(())).unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    assert!(err.to_string().contains("redo log missing"), "{err}");

    // Even past the end, the active segment stays.
    wal.purge_before(end_lsn + 1000).unwrap();
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(segment_paths(&dir).len(), 1);
    drop(wal);

    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!((report.end_lsn, report.segments), (end_lsn, 1));
    let active_first = first_lsn_of(&segment_paths(&dir)[0]);
    let from = all
        .iter()
        .position(|(lsn, _)| *lsn == active_first)
        .unwrap();
    assert_eq!(replay_all(&wal, active_first), all[from..]);
}
