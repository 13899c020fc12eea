//! A torn redo tail is cut off at recovery and reported; every write before it survives.

use std::process::Command;

use deltasnap::{Config, Engine, PageId, PartitionId};

const CHILD_VAR: &str = "DELTASNAP_TORN_TAIL_CHILD_STORE";

fn config() -> Config {
    Config {
        background_checkpointer: false,
        ..Config::default()
    }
}

/// Runs only as the child of the test below: writes, syncs and exits without `close`.
#[test]
fn child_writes_and_exits_without_close() {
    let Ok(dir) = std::env::var(CHILD_VAR) else {
        return;
    };
    let engine = Engine::open(dir, config()).unwrap();
    engine.create_partition(PartitionId(0)).unwrap();
    let page = engine.allocate_page(PartitionId(0)).unwrap();
    engine.checkpoint().unwrap();
    engine.write(page, 0, b"first").unwrap();
    engine.write(page, 8, b"second").unwrap();
    engine.sync().unwrap();
    std::process::exit(0);
}

#[test]
fn torn_wal_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    // The writes happen in a child process that exits without closing the engine: a crash, with
    // no final checkpoint, after which the OS releases the store lock.
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writes_and_exits_without_close",
            "--nocapture",
        ])
        .env(CHILD_VAR, dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "the writing child failed: {status}");
    // Tear the last record: chop a few bytes off the end of the newest segment.
    let wal = dir.path().join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);

    let engine = Engine::open(dir.path(), config()).unwrap();
    let cut = engine
        .recovery_report()
        .wal_tail_cut
        .as_ref()
        .expect("the torn tail is reported in the open result");
    assert!(cut.bytes_dropped > 0);
    let payload = engine.read(PageId::new(PartitionId(0), 0)).unwrap();
    assert_eq!(
        &payload[..5],
        b"first",
        "the write before the torn record survives"
    );
    assert_eq!(
        &payload[8..14],
        &[0; 6],
        "the torn write is gone, not half-applied"
    );
    engine
        .write(PageId::new(PartitionId(0), 0), 8, b"again")
        .unwrap();
    engine.sync().unwrap();
}
