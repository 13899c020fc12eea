//! One engine per store (issue 11, defect 1). Without the store lock a second `Engine::open` of a
//! live store succeeds, and its recovery and close rewrite the store under the first: the
//! sequence below (A writes and syncs; B opens; A checkpoints twice, purging old redo; B closes,
//! writing a control file whose replay start A purged; A crashes) leaves a store that no longer
//! opens ("redo log missing"). The lock refuses B in this process and in another one, names the
//! holder's pid, and dies with the holder (close, drop, `kill -9`).
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use deltasnap::bugs::{self, Bug};
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{lock_holder, lock_holder_on, Config, Engine, Error, PartitionId};

/// The seeded-bug switch is process-wide: the tests of this binary run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Small segments and no background threads, so that two checkpoints purge the first segments.
fn config() -> Config {
    Config {
        page_size: 4096,
        wal_segment_bytes: 64 << 10,
        background_checkpointer: false,
        ..Config::default()
    }
}

fn assert_locked(result: deltasnap::Result<Engine>, pid: Option<u32>) {
    match result {
        Err(Error::StoreLocked { holder_pid, .. }) => assert_eq!(holder_pid, pid, "holder's pid"),
        Err(other) => panic!("expected StoreLocked, got {other}"),
        Ok(_) => panic!("a second engine opened a store another engine holds"),
    }
}

/// The sequence; returns the error of the final reopen, if any.
fn second_engine_sequence(sim: &Arc<SimFs>) -> Option<Error> {
    let vfs: Arc<dyn Vfs> = sim.clone();
    let dir = Path::new("/store");
    let a = Engine::open_on(Arc::clone(&vfs), dir, config()).unwrap();
    a.create_partition(PartitionId(1)).unwrap();
    let page = a.allocate_page(PartitionId(1)).unwrap();
    a.write(page, 0, b"synced by A").unwrap();
    a.sync().unwrap();
    let b = match Engine::open_on(Arc::clone(&vfs), dir, config()) {
        Ok(b) => Some(b),
        Err(Error::StoreLocked { .. }) => None,
        Err(other) => panic!("second open: {other}"),
    };
    // Enough redo for segment rolls, then two checkpoints: the first segments are purged.
    for i in 0..64u32 {
        a.write(page, 0, &vec![i as u8; 3000]).unwrap();
    }
    a.checkpoint().unwrap();
    a.write(page, 0, b"after the first checkpoint").unwrap();
    a.checkpoint().unwrap();
    a.write(page, 0, b"synced by A, last").unwrap();
    a.sync().unwrap();
    if let Some(b) = b {
        let _ = b.close();
    }
    std::mem::forget(a); // A crashes: no close
    sim.crash(7);
    match Engine::open_on(vfs, dir, config()) {
        Ok(engine) => {
            assert_eq!(&engine.read(page).unwrap()[..17], b"synced by A, last");
            None
        }
        Err(error) => Some(error),
    }
}

#[test]
fn a_second_engine_cannot_make_the_store_unopenable() {
    let _serial = serial();
    let sim = Arc::new(SimFs::new());
    if let Some(error) = second_engine_sequence(&sim) {
        panic!("the store no longer opens after a second engine came and went: {error}");
    }
}

/// The regression test fails without the lock: the seeded bug reproduces the report.
#[test]
fn seeded_no_store_lock_is_caught() {
    let _serial = serial();
    bugs::set(Bug::NoStoreLock, true);
    let sim = Arc::new(SimFs::new());
    let error = second_engine_sequence(&sim);
    bugs::set(Bug::NoStoreLock, false);
    let error = error.expect("without the lock the second engine breaks the store");
    assert!(
        error.to_string().contains("redo log"),
        "unexpected failure: {error}"
    );
}

#[test]
fn a_second_open_in_this_process_is_refused_until_the_first_closes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let first = Engine::open(dir.path(), config()).unwrap();
    let me = Some(std::process::id());
    assert_locked(Engine::open(dir.path(), config()), me);
    assert_eq!(lock_holder(dir.path()).unwrap().map(|h| h.pid), Some(me));
    first.close().unwrap();
    assert_eq!(lock_holder(dir.path()).unwrap(), None);

    let second = Engine::open(dir.path(), config()).expect("free after close");
    assert_locked(Engine::open(dir.path(), config()), me);
    drop(second);
    Engine::open(dir.path(), config()).expect("free after drop");
}

#[test]
fn the_lock_on_simfs_dies_with_a_crash() {
    let _serial = serial();
    let sim = Arc::new(SimFs::new());
    let vfs: Arc<dyn Vfs> = sim.clone();
    let dir = Path::new("/store");
    let engine = Engine::open_on(Arc::clone(&vfs), dir, config()).unwrap();
    assert!(lock_holder_on(&vfs, dir).unwrap().is_some());
    assert_locked(
        Engine::open_on(Arc::clone(&vfs), dir, config()),
        Some(std::process::id()),
    );
    std::mem::forget(engine);
    sim.crash(1);
    assert_eq!(lock_holder_on(&vfs, dir).unwrap(), None);
    Engine::open_on(vfs, dir, config()).expect("the crashed holder's lock is gone");
}

#[test]
fn a_directory_that_is_not_a_store_gets_no_lock_file() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let error = Engine::open(dir.path(), config()).expect_err("not a store");
    assert!(matches!(error, Error::NotAStore { .. }), "{error}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
}

const CHILD_VAR: &str = "DELTASNAP_LOCK_TEST_CHILD_STORE";

/// Runs only as the child of the test below: holds the store open until killed.
#[test]
fn child_holds_the_store() {
    let Ok(dir) = std::env::var(CHILD_VAR) else {
        return;
    };
    let _engine = Engine::open(&dir, config()).unwrap();
    println!("holding");
    std::thread::sleep(std::time::Duration::from_secs(60));
    panic!("the parent did not kill this child within 60 s");
}

#[test]
fn a_second_open_in_another_process_is_refused_until_it_dies() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    Engine::open(dir.path(), config()).unwrap().close().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_holds_the_store", "--nocapture"])
        .env(CHILD_VAR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let held = lines.any(|line| line.is_ok_and(|l| l.contains("holding")));
    if !held {
        let _ = child.kill();
        panic!("the child never held the store: {:?}", child.wait());
    }
    let pid = Some(child.id());
    assert_locked(Engine::open(dir.path(), config()), pid);
    assert_eq!(lock_holder(dir.path()).unwrap().map(|h| h.pid), Some(pid));
    child.kill().unwrap(); // SIGKILL: no close, no destructor
    child.wait().unwrap();
    Engine::open(dir.path(), config()).expect("the dead process's lock is gone");
}
