//! Breaks if a directory a snapshot or a restore creates is not fsynced in its parent: the
//! snapshot's target directory (and its missing parents) or the restored store's directory (and
//! its missing parents) would be lost at a power cut (`SimFs` rule 3), taking a published
//! snapshot or a restored store with it although `wait` or `restore` returned `Ok`.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deltasnap::bugs::Bug;
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{Engine, SnapshotOptions};
use deltasnap_verification::kill;
use support::{config, History, State, ROOT};

const PAGE_SIZE: u32 = 1024;
const CRASH_SEED: u64 = 0xd125;

/// Tests that switch a seeded bug on run alone (the switch is process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

/// Two directory levels the snapshot must create under the durable root `/t`.
fn target_dir() -> PathBuf {
    Path::new(ROOT).join("backups").join("nightly")
}

fn snapshot_dir() -> PathBuf {
    target_dir().join("snap")
}

/// Three directory levels the restore must create.
fn restored_dir() -> PathBuf {
    Path::new(ROOT).join("restored").join("a").join("store")
}

/// A store with a written, checkpointed base and later writes, on a `SimFs` whose `/`, `/t` and
/// store directory are durable; a snapshot of it into a target that does not exist yet.
fn publish(sim: &SimFs) -> State {
    let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
    let store = Path::new(ROOT).join("store");
    let engine = Engine::open_on(Arc::clone(&vfs), &store, config(PAGE_SIZE)).unwrap();
    for dir in [Path::new("/"), Path::new(ROOT), store.as_path()] {
        sim.sync_dir(dir).unwrap();
    }
    let mut history = History::create(&engine, 2, 8);
    for page in history.pages() {
        history.write(&engine, page, 1).unwrap();
    }
    engine.checkpoint().unwrap();
    for page in history.pages().into_iter().filter(|p| p.index % 2 == 0) {
        history.write(&engine, page, 2).unwrap();
    }
    let manifest = engine
        .snapshot(SnapshotOptions::new(target_dir(), "snap"))
        .unwrap()
        .wait()
        .unwrap();
    engine.close().unwrap();
    history.state_at_cut(Some(manifest.cut_epoch))
}

/// Publish, power cut, verify.
fn publish_then_crash() {
    let sim = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
    publish(&sim);
    sim.crash(CRASH_SEED);
    assert!(
        Vfs::exists(&sim, &snapshot_dir()).unwrap(),
        "the published snapshot {} is gone after a power cut",
        snapshot_dir().display()
    );
    let report = deltasnap::verify_snapshot_on(&vfs, &snapshot_dir()).unwrap();
    assert!(report.is_ok(), "after a power cut: {:?}", report.problems);
}

/// Publish, restore, power cut, open and compare with the cut.
fn restore_then_crash() {
    let sim = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
    let at_cut = publish(&sim);
    deltasnap::restore_on(&vfs, &snapshot_dir(), &restored_dir()).unwrap();
    sim.crash(CRASH_SEED);
    assert!(
        Vfs::exists(&sim, &restored_dir().join("CONTROL")).unwrap(),
        "the restored store {} is gone after a power cut",
        restored_dir().display()
    );
    let restored = Engine::open_on(vfs, restored_dir(), config(PAGE_SIZE)).unwrap();
    let found = State::read(&restored);
    assert!(
        found == at_cut,
        "the restored store after a power cut: {}",
        found.first_difference(&at_cut)
    );
}

#[test]
fn a_published_snapshot_survives_a_power_cut() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    publish_then_crash();
}

#[test]
fn a_restored_store_survives_a_power_cut() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    restore_then_crash();
}

#[test]
fn seeded_snapshot_dirs_not_synced_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    kill::assert_caught(
        "snapshot-dirs-durable",
        Bug::SnapshotDirsNotSynced,
        publish_then_crash,
    );
    kill::assert_caught(
        "snapshot-dirs-durable",
        Bug::SnapshotDirsNotSynced,
        restore_then_crash,
    );
}
