//! Breaks if encoding, framing or decoding of any record kind changes what comes back: every kind
//! is appended, synced, reopened and replayed, and must come back equal, at the LSN `append` gave.

mod common;

use common::*;
use deltasnap::wal::Record;
use deltasnap::{PageId, PartitionId};

#[test]
fn every_record_kind_roundtrips_through_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(1 << 20);
    let page = PageId::new(PartitionId(7), 3);
    let records = vec![
        Record::PageImage {
            epoch: 1,
            page,
            payload: vec![0xAB; PAYLOAD_BYTES],
        },
        Record::PageDelta {
            epoch: 1,
            page,
            offset: 0,
            bytes: vec![],
        },
        Record::PageDelta {
            epoch: 2,
            page,
            offset: (PAYLOAD_BYTES - 3) as u32,
            bytes: vec![1, 2, 3],
        },
        Record::Allocate {
            epoch: 2,
            partition: PartitionId(7),
            page_count: 4,
        },
        Record::CreatePartition {
            epoch: 3,
            partition: PartitionId(8),
        },
        Record::DropPartition {
            epoch: 3,
            partition: PartitionId(u32::MAX),
        },
        Record::MetadataPut {
            epoch: 4,
            key: b"schema".to_vec(),
            value: Some(b"{}".to_vec()),
        },
        Record::MetadataPut {
            epoch: 4,
            key: b"schema".to_vec(),
            value: Some(vec![]),
        },
        Record::MetadataPut {
            epoch: u64::MAX,
            key: vec![],
            value: None,
        },
    ];

    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!(
        (report.end_lsn, report.tail_cut.clone(), report.segments),
        (0, None, 1)
    );
    let mut expected = Vec::new();
    let mut next_lsn = 0;
    for record in &records {
        let lsn = wal.append(record).unwrap();
        assert_eq!(lsn, next_lsn, "LSN = byte position in the log stream");
        next_lsn += record.encoded_len() as u64;
        expected.push((lsn, record.clone()));
    }
    assert_eq!(wal.end_lsn(), next_lsn);
    assert_eq!(wal.sync().unwrap(), next_lsn);
    assert_eq!(wal.durable_lsn(), next_lsn);
    assert_eq!(replay_all(&wal, 0), expected, "replay before reopen");
    drop(wal);

    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!(report.end_lsn, next_lsn);
    assert_eq!(report.tail_cut, None);
    assert_eq!(replay_all(&wal, 0), expected, "replay after reopen");
    for (lsn, record) in &expected {
        assert_eq!(record.epoch(), replay_all(&wal, *lsn)[0].1.epoch());
    }
}
