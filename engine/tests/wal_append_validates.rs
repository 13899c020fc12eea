//! Breaks if `append` logs a record that replay could not apply (a page image of the wrong size,
//! a delta past the payload): such records must be refused before they take an LSN.

mod common;

use common::*;
use deltasnap::wal::Record;
use deltasnap::{PageId, PartitionId};

#[test]
fn append_rejects_records_that_do_not_fit_the_page_size() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = std_fs();
    let (wal, _) = open(&fs, &tmp.path().join("wal"), &small_config(1 << 20));
    let page = PageId::new(PartitionId(1), 0);
    let short_image = Record::PageImage {
        epoch: 1,
        page,
        payload: vec![0; 10],
    };
    assert!(matches!(
        wal.append(&short_image),
        Err(deltasnap::Error::InvalidArgument(_))
    ));
    let delta_past_end = Record::PageDelta {
        epoch: 1,
        page,
        offset: PAYLOAD_BYTES as u32,
        bytes: vec![1],
    };
    assert!(matches!(
        wal.append(&delta_past_end),
        Err(deltasnap::Error::OutOfPage { .. })
    ));
    assert_eq!(wal.end_lsn(), 0, "a rejected record takes no LSN");
    wal.append(&record(1)).unwrap();
}
