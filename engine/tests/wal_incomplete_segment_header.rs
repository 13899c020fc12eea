//! Breaks if recovery cannot open a log that crashed while a roll was creating the next segment
//! (the file exists, its header never became durable), or if it resets a segment that could hold
//! synced records.

mod common;

use common::*;
use deltasnap::Error;

fn log_with_stray_next_segment(
    stray: &[u8],
) -> (tempfile::TempDir, std::path::PathBuf, FaultFs, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let (wal, _) = open(&fs, &dir, &small_config(1 << 20));
    let (_, end_lsn) = append_stream(&wal, 10);
    wal.sync().unwrap();
    drop(wal);
    std::fs::write(dir.join(format!("{end_lsn:020}.log")), stray).unwrap();
    (tmp, dir, fs, end_lsn)
}

#[test]
fn an_empty_or_zeroed_new_segment_is_reset_and_reported() {
    for stray in [&[][..], &[0u8; 7][..], &[0u8; 32][..], &b"DSWAL\0"[..]] {
        let (_tmp, dir, fs, end_lsn) = log_with_stray_next_segment(stray);
        let (wal, report) = open(&fs, &dir, &small_config(1 << 20));
        let cut = report.tail_cut.expect("the reset must be reported");
        assert_eq!((cut.lsn, cut.bytes_dropped), (end_lsn, stray.len() as u64));
        assert_eq!((report.end_lsn, report.segments), (end_lsn, 2));
        assert_eq!(replay_all(&wal, 0).len(), 10);
        assert_eq!(wal.append(&record(10)).unwrap(), end_lsn);
        wal.sync().unwrap();
        drop(wal);
        let (wal, report) = open(&fs, &dir, &small_config(1 << 20));
        assert_eq!(report.tail_cut, None);
        assert_eq!(replay_all(&wal, 0).len(), 11);
    }
}

#[test]
fn a_zeroed_header_followed_by_bytes_is_corruption() {
    let mut stray = vec![0u8; 32];
    stray.extend_from_slice(&[1, 2, 3, 4]);
    let (_tmp, dir, fs, _) = log_with_stray_next_segment(&stray);
    let err = deltasnap::wal::Wal::open(std::sync::Arc::new(fs), &dir, small_config(1 << 20), 0)
        .unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
}
