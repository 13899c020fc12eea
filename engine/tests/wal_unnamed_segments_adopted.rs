//! Breaks if records in rolled segments that were never named (no sync after the roll) are lost
//! at a reopen although their bytes are on disk: recovery must adopt the chain of spares that
//! continues the log, and only that chain (a spare after a torn segment, or one that does not
//! continue the log, is deleted, never read), and must leave no spare behind.

mod common;

use std::path::Path;

use common::*;

fn spare_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".spare-"))
        .collect();
    names.sort();
    names
}

#[test]
fn unnamed_segments_with_every_byte_on_disk_are_adopted_at_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(2000);
    let (wal, _) = open(&fs, &dir, &config);
    // A spare made ahead of the first roll (the others make their own).
    wal.maintain().unwrap();
    let mut lsns = Vec::new();
    while wal.segment_count() < 4 {
        lsns.push(wal.append(&record(lsns.len() as u64)).unwrap());
    }
    lsns.push(wal.append(&record(lsns.len() as u64)).unwrap());
    let end_lsn = wal.end_lsn();
    // Nothing is synced; dropping the log leaves its buffer unwritten: write it out by a
    // replay (which writes, never fsyncs), as a process would have before it died.
    assert_eq!(replay_all(&wal, 0).len(), lsns.len());
    drop(wal);
    assert_eq!(segment_paths(&dir).len(), 1);
    assert_eq!(spare_names(&dir).len(), 3, "three rolled segments");
    // A spare made ahead of a roll that never came (empty), and a stray one whose content is no
    // header continuing the log.
    std::fs::write(dir.join(".spare-00000000000000000098"), []).unwrap();
    std::fs::write(dir.join(".spare-00000000000000000099"), [7u8; 40]).unwrap();

    let (wal, report) = open(&fs, &dir, &config);
    assert_eq!(
        (report.end_lsn, report.segments, report.tail_cut),
        (end_lsn, 4, None)
    );
    assert_eq!(
        segment_paths(&dir).len(),
        4,
        "the rolled segments are named"
    );
    assert_eq!(spare_names(&dir), Vec::<String>::new());
    let expected: Vec<_> = lsns
        .iter()
        .enumerate()
        .map(|(i, &lsn)| (lsn, record(i as u64)))
        .collect();
    assert_eq!(replay_all(&wal, 0), expected);
    // The log goes on from its end, across more rolls.
    let next = wal.append(&record(1000)).unwrap();
    assert_eq!(next, end_lsn);
}

#[test]
fn a_torn_unnamed_segment_ends_the_log_and_later_spares_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = std_fs();
    let config = small_config(2000);
    let (wal, _) = open(&fs, &dir, &config);
    let mut lsns = Vec::new();
    while wal.segment_count() < 4 {
        lsns.push(wal.append(&record(lsns.len() as u64)).unwrap());
    }
    replay_all(&wal, 0);
    drop(wal);
    // Tear the first rolled segment: chop 3 bytes off its last record.
    let spares = spare_names(&dir);
    assert_eq!(spares.len(), 3);
    let first_rolled = dir.join(&spares[0]);
    let len = std::fs::metadata(&first_rolled).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&first_rolled)
        .unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);

    let (wal, report) = open(&fs, &dir, &config);
    let cut = report.tail_cut.expect("the torn record is reported");
    assert_eq!(
        report.segments, 2,
        "the torn segment is adopted, the later ones are not"
    );
    assert_eq!(spare_names(&dir), Vec::<String>::new());
    let replayed = replay_all(&wal, 0);
    assert_eq!(report.end_lsn, cut.lsn);
    assert!(!replayed.is_empty() && replayed.len() < lsns.len());
    for (i, (lsn, record_found)) in replayed.iter().enumerate() {
        assert_eq!((*lsn, record_found), (lsns[i], &record(i as u64)));
    }
    assert_eq!(
        lsns.get(replayed.len()),
        Some(&cut.lsn),
        "the log ends where the torn record began"
    );
}
