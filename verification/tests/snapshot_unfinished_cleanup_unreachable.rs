//! Breaks if a snapshot's temporary directory that cannot be removed (its backup target is
//! unreachable, say) stops `Engine::open` of the store: the cleanup of a directory outside the
//! store must be logged, listed in `RecoveryReport::unfinished_snapshot_cleanups_failed`, and
//! retried by the next open (its marker kept), never fail the open.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deltasnap::bugs::Bug;
use deltasnap::vfs::{FaultError, FaultKind, OpenMode, SimFs, Vfs};
use deltasnap::Engine;
use deltasnap_verification::fault_fs::FaultFs;
use deltasnap_verification::kill;
use support::{config, store_dir, History};

const PAGE_SIZE: u32 = 1024;

/// Tests that switch a seeded bug on run alone (the switch is process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

/// The temporary directory of snapshot `nightly` in a backup target outside the store.
fn tmp_dir() -> PathBuf {
    Path::new("/backup").join(".nightly.deltasnap-tmp")
}

fn marker() -> PathBuf {
    store_dir().join("snapshots-tmp").join("nightly.pending")
}

/// What a crash in the middle of snapshot `nightly` leaves (format.md §5): the store's marker
/// naming the temporary directory, and the directory.
fn leave_an_unfinished_snapshot(sim: &SimFs) {
    sim.create_dir_all(&tmp_dir().join("partitions")).unwrap();
    sim.create_dir_all(marker().parent().unwrap()).unwrap();
    let file = sim.open(&marker(), OpenMode::CreateNew).unwrap();
    file.write_all_at(tmp_dir().to_str().unwrap().as_bytes(), 0)
        .unwrap();
}

fn open_with_the_target_unreachable() {
    let sim = SimFs::new();
    let fs = FaultFs::new(Arc::new(sim.clone()));
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let engine = Engine::open_on(Arc::clone(&vfs), store_dir(), config(PAGE_SIZE)).unwrap();
    History::create(&engine, 1, 2);
    engine.close().unwrap();
    drop(engine);
    leave_an_unfinished_snapshot(&sim);

    fs.fail_nth(0, FaultError::Eio, |op| {
        op.kind == FaultKind::Remove && op.path_contains("deltasnap-tmp")
    });
    let engine = Engine::open_on(Arc::clone(&vfs), store_dir(), config(PAGE_SIZE))
        .expect("a temporary directory that cannot be removed must not stop the open");
    assert_eq!(fs.fired().len(), 1, "the fault fired: {:?}", fs.fired());
    let report = engine.recovery_report();
    assert_eq!(report.unfinished_snapshot_cleanups_failed, vec![tmp_dir()]);
    assert!(report.unfinished_snapshots_removed.is_empty(), "{report:?}");
    assert!(
        Vfs::exists(&sim, &marker()).unwrap(),
        "the marker is kept for a retry"
    );
    assert_eq!(engine.partitions().len(), 1, "the store opened whole");
    engine.close().unwrap();
    drop(engine);

    // The target is back: the next open removes the directory and the marker.
    let engine = Engine::open_on(Arc::clone(&vfs), store_dir(), config(PAGE_SIZE)).unwrap();
    let report = engine.recovery_report();
    assert_eq!(report.unfinished_snapshots_removed, vec![tmp_dir()]);
    assert!(report.unfinished_snapshot_cleanups_failed.is_empty());
    assert!(!Vfs::exists(&sim, &tmp_dir()).unwrap());
    assert!(!Vfs::exists(&sim, &marker()).unwrap());
    engine.close().unwrap();
}

#[test]
fn an_unreachable_temporary_directory_does_not_stop_the_open_and_is_retried() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    open_with_the_target_unreachable();
}

#[test]
fn seeded_unfinished_cleanup_fails_open_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    kill::assert_caught(
        "snapshot-cleanup",
        Bug::UnfinishedCleanupFailsOpen,
        open_with_the_target_unreachable,
    );
}
