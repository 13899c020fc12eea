//! Breaks if the store's marker of an unfinished snapshot names its temporary directory by a
//! relative path: a snapshot into a relative target, then an open of the store from another
//! working directory, would look for the temporary directory in the wrong place, drop the marker
//! and leak the directory. (Real file system; this binary's only test changes the working
//! directory of the process.)
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use deltasnap::{Engine, SnapshotOptions};
use support::{config, copy_dir, wait_checkpoint_ended, wait_until, Gate, History};

const PAGE_SIZE: u32 = 1024;

#[test]
fn an_open_from_another_working_directory_removes_the_temporary_directory() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let (first_cwd, second_cwd) = (root.join("first"), root.join("second"));
    fs::create_dir_all(&first_cwd).unwrap();
    fs::create_dir_all(&second_cwd).unwrap();
    std::env::set_current_dir(&first_cwd).unwrap();

    let store = root.join("store");
    let engine = Engine::open(&store, config(PAGE_SIZE)).unwrap();
    let mut history = History::create(&engine, 1, 4);
    for page in history.pages() {
        history.write(&engine, page, 1).unwrap();
    }
    engine.checkpoint().unwrap(); // so that the copier has pages to copy (and a gate to reach)
    let gate = Arc::new(Gate::default());
    let mut options = SnapshotOptions::new("backups", "nightly");
    options.copy_gate = Some(gate.copy_gate());
    let snapshot = engine.snapshot(options).unwrap();
    wait_until("the copier at its gate", || gate.reached() > 0);
    wait_checkpoint_ended(&engine, snapshot.progress().cut_epoch.unwrap());
    let tmp = first_cwd.join("backups").join(".nightly.deltasnap-tmp");
    assert!(tmp.is_dir(), "the snapshot's temporary directory");
    let marker = fs::read_to_string(store.join("snapshots-tmp").join("nightly.pending")).unwrap();
    assert_eq!(
        Path::new(&marker),
        tmp,
        "the marker names the temporary directory absolutely"
    );

    // What a crash now would leave, opened from elsewhere.
    let copy = root.join("store-copy");
    copy_dir(&store, &copy);
    std::env::set_current_dir(&second_cwd).unwrap();
    let reopened = Engine::open(&copy, config(PAGE_SIZE)).unwrap();
    assert_eq!(
        reopened.recovery_report().unfinished_snapshots_removed,
        vec![tmp.clone()]
    );
    assert!(!tmp.exists(), "the temporary directory leaked");
    reopened.close().unwrap();

    gate.open();
    assert!(
        snapshot.wait().is_err(),
        "its temporary directory was removed under it"
    );
    engine.close().unwrap();
}
