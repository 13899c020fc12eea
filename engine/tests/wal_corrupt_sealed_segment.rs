//! Breaks if a bad record in a segment that is not the last one is treated as a torn tail (cut,
//! silently losing every later segment) instead of an error that names the segment and the LSN.

mod common;

use common::*;
use deltasnap::Error;

#[test]
fn a_corrupt_record_in_a_sealed_segment_fails_replay_and_is_not_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(3000);
    let (wal, _) = open(&fs, &dir, &config);
    let (lsns, _) = append_stream(&wal, 100);
    wal.sync().unwrap();
    drop(wal);

    let paths = segment_paths(&dir);
    assert!(paths.len() >= 3);
    let sealed = &paths[1];
    let first = first_lsn_of(sealed);
    let next_first = first_lsn_of(&paths[2]);
    let victim_lsn = *lsns
        .iter()
        .find(|&&lsn| lsn > first && lsn < next_first)
        .unwrap();
    flip_byte(sealed, file_offset(first, victim_lsn) + 10, 0x01);
    let len_before = std::fs::metadata(sealed).unwrap().len();

    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!(report.tail_cut, None, "only the last segment may be cut");
    let err = wal.replay(0, |_, _| Ok(())).unwrap_err();
    match &err {
        Error::Corrupted { file, reason, .. } => {
            assert_eq!(file, sealed);
            assert!(reason.contains(&format!("LSN {victim_lsn}")), "{reason}");
        }
        other => panic!("expected Corrupted, got {other}"),
    }
    assert_eq!(std::fs::metadata(sealed).unwrap().len(), len_before);
    // Replay from past the damage still works.
    assert_eq!(
        replay_all(&wal, next_first).first().map(|r| r.0),
        Some(next_first)
    );
}
