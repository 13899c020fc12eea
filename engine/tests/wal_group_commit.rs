//! Breaks if concurrent `sync` callers do not share fsyncs (group commit), if `sync` returns
//! before the bytes it covers were fsynced, or if a synced record is missing after reopen.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use deltasnap::vfs::FaultKind;
use deltasnap::wal::Record;

const THREADS: usize = 4;
const ROUNDS: usize = 100;

fn thread_record(thread: usize, round: usize) -> Record {
    Record::MetadataPut {
        epoch: round as u64,
        key: format!("t{thread}-r{round}").into_bytes(),
        value: Some(vec![thread as u8; 1 + round % 40]),
    }
}

#[test]
fn four_threads_share_fsyncs_and_every_synced_record_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    // One segment for the whole run, so an LSN maps to one file offset.
    let config = small_config(64 << 20);
    let (wal, _) = open(&fs, &dir, &config);
    let wal = Arc::new(wal);
    let segment = segment_paths(&dir).pop().unwrap();
    // A slow disk, so that syncs overlap the way they do on real storage.
    fs.delay_every(FaultKind::SyncFile, Duration::from_micros(1000));
    let fsyncs_before = file_fsyncs(&fs);

    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let wal = Arc::clone(&wal);
            let fs = fs.clone();
            let segment = segment.clone();
            std::thread::spawn(move || {
                let mut synced = Vec::new();
                for round in 0..ROUNDS {
                    let record = thread_record(thread, round);
                    let lsn = wal.append(&record).unwrap();
                    let record_end = lsn + record.encoded_len() as u64;
                    let durable = wal.sync().unwrap();
                    assert!(durable >= record_end, "sync returned {durable} before {record_end}");
                    // The test file system saw an fsync that covered the record's bytes.
                    let durable_bytes = fs.durable_len(&segment);
                    assert!(
                        durable_bytes >= file_offset(0, record_end),
                        "sync returned, but only {durable_bytes} bytes were fsynced, record ends at {}",
                        file_offset(0, record_end)
                    );
                    synced.push((lsn, record));
                }
                synced
            })
        })
        .collect();
    let mut synced: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let fsyncs = file_fsyncs(&fs) - fsyncs_before;
    let sync_calls = (THREADS * ROUNDS) as u64;
    println!("group commit: {sync_calls} sync calls, {fsyncs} fsyncs");
    assert!(
        fsyncs < sync_calls,
        "{fsyncs} fsyncs for {sync_calls} syncs: no fsync was shared"
    );
    assert_eq!(wal.durable_lsn(), wal.end_lsn());
    drop(wal);

    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!(report.tail_cut, None);
    synced.sort_by_key(|(lsn, _)| *lsn);
    assert_eq!(replay_all(&wal, 0), synced);
}

#[test]
fn sync_with_nothing_new_does_not_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = std_fs();
    let (wal, _) = open(&fs, &tmp.path().join("wal"), &small_config(1 << 20));
    wal.append(&record(1)).unwrap();
    wal.sync().unwrap();
    let fsyncs = file_fsyncs(&fs);
    assert_eq!(wal.sync().unwrap(), wal.end_lsn());
    assert_eq!(file_fsyncs(&fs), fsyncs);
}
