//! Breaks if open trusts a segment whose header is not a deltasnap header, fails its crc, or names
//! another first LSN than the file name, instead of failing with an error naming the file.

mod common;

use common::*;
use deltasnap::Error;

fn two_segment_log() -> (tempfile::TempDir, std::path::PathBuf, FaultFs) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let (wal, _) = open(&fs, &dir, &small_config(2000));
    append_stream(&wal, 30);
    wal.sync().unwrap();
    assert!(wal.segment_count() >= 2);
    (tmp, dir, fs)
}

#[test]
fn bad_magic_is_corruption_naming_the_segment() {
    let (_tmp, dir, fs) = two_segment_log();
    let first = segment_paths(&dir)[0].clone();
    flip_byte(&first, 0, 0xFF);
    let err = deltasnap::wal::Wal::open(std::sync::Arc::new(fs), &dir, small_config(2000), 0)
        .unwrap_err();
    match &err {
        Error::Corrupted { file, reason, .. } => {
            assert_eq!(file, &first);
            assert!(reason.contains("not a deltasnap redo segment"), "{reason}");
        }
        other => panic!("expected Corrupted, got {other}"),
    }
}

#[test]
fn a_flipped_header_field_fails_the_header_crc() {
    let (_tmp, dir, fs) = two_segment_log();
    let last = segment_paths(&dir).pop().unwrap();
    flip_byte(&last, 16, 0x01); // first_lsn
    let err = deltasnap::wal::Wal::open(std::sync::Arc::new(fs), &dir, small_config(2000), 0)
        .unwrap_err();
    assert!(
        matches!(&err, Error::ChecksumMismatch { file, .. } if *file == last),
        "{err}"
    );
}

#[test]
fn a_renamed_segment_disagrees_with_its_header() {
    let (_tmp, dir, fs) = two_segment_log();
    let first = segment_paths(&dir)[0].clone();
    let renamed = dir.join("00000000000000000001.log");
    std::fs::rename(&first, &renamed).unwrap();
    let err = deltasnap::wal::Wal::open(std::sync::Arc::new(fs), &dir, small_config(2000), 0)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Corrupted { file, .. } if *file == renamed),
        "{err}"
    );
    assert!(err.to_string().contains("file name says 1"), "{err}");
}

#[test]
fn a_malformed_segment_name_is_an_error() {
    let (_tmp, dir, fs) = two_segment_log();
    std::fs::write(dir.join("12.log"), b"").unwrap();
    let err = deltasnap::wal::Wal::open(std::sync::Arc::new(fs), &dir, small_config(2000), 0)
        .unwrap_err();
    assert!(err.to_string().contains("20 decimal digits"), "{err}");
}
