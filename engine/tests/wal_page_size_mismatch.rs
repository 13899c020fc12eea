//! Breaks if a log written with one page size opens with another: page images would be decoded
//! with the wrong payload length.

mod common;

use common::*;
use deltasnap::Error;

#[test]
fn opening_with_another_page_size_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let (wal, _) = open(&fs, &dir, &small_config(1 << 20));
    append_stream(&wal, 5);
    wal.sync().unwrap();
    drop(wal);

    let mut config = small_config(1 << 20);
    config.page_size = PAGE_SIZE * 2;
    let err = deltasnap::wal::Wal::open(std::sync::Arc::new(fs), &dir, config, 0).unwrap_err();
    assert!(
        matches!(err, Error::PageSizeMismatch { on_disk: PAGE_SIZE, configured, .. } if configured == PAGE_SIZE * 2),
        "{err}"
    );
}
