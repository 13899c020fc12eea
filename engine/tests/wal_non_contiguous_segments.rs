//! Breaks if open accepts a log with a hole (a missing middle segment, or a sealed segment that
//! lost its end): replay would silently skip records.

mod common;

use common::*;
use deltasnap::Error;

fn three_segment_log() -> (tempfile::TempDir, std::path::PathBuf, FaultFs) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let (wal, _) = open(&fs, &dir, &small_config(2000));
    append_stream(&wal, 60);
    wal.sync().unwrap();
    assert!(wal.segment_count() >= 3);
    (tmp, dir, fs)
}

#[test]
fn a_missing_middle_segment_is_an_error() {
    let (_tmp, dir, fs) = three_segment_log();
    let paths = segment_paths(&dir);
    std::fs::remove_file(&paths[1]).unwrap();
    let err = deltasnap::wal::Wal::open(std::sync::Arc::new(fs), &dir, small_config(2000), 0)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Corrupted { file, .. } if *file == paths[2]),
        "{err}"
    );
    assert!(err.to_string().contains("not contiguous"), "{err}");
}

#[test]
fn a_sealed_segment_cut_short_is_an_error() {
    let (_tmp, dir, fs) = three_segment_log();
    let paths = segment_paths(&dir);
    let len = std::fs::metadata(&paths[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&paths[0])
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let err = deltasnap::wal::Wal::open(std::sync::Arc::new(fs), &dir, small_config(2000), 0)
        .unwrap_err();
    assert!(err.to_string().contains("not contiguous"), "{err}");
}
