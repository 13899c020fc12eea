//! Breaks if replay accepts a start it cannot honour: an LSN inside a record (it would decode
//! garbage or skip part of a write) or past the end, instead of a clear error.

mod common;

use common::*;
use deltasnap::Error;

#[test]
fn replay_from_inside_a_record_or_past_the_end_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = std_fs();
    let (wal, _) = open(&fs, &tmp.path().join("wal"), &small_config(4096));
    let (lsns, end_lsn) = append_stream(&wal, 30);

    let inside = lsns[17] + 3;
    let err = wal
        .replay(inside, |_, _| panic!("nothing may be applied"))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("not a record boundary"), "{err}");

    let err = wal
        .replay(end_lsn + 1, |_, _| panic!("nothing may be applied"))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}
