//! A failed snapshot whose temporary directory cannot be removed (EIO on the removal) must keep
//! its marker, so that the next `Engine::open` removes the directory as the task's warning
//! promises: if the marker went anyway, the directory would be orphaned for good and every later
//! snapshot of that name would be refused ("… exists: … its store was not reopened") even after
//! a reopen.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::sync::Arc;

use deltasnap::vfs::{FaultError, FaultKind};
use deltasnap::Engine;
use support::{config, marker, store_dir, tmp_dir, Fixture, SNAPSHOT_NAME};

#[test]
fn a_temp_dir_left_by_a_failed_cleanup_is_removed_at_the_next_open() {
    let fixture = Fixture::new();
    // The snapshot fails in the merge, then its cleanup fails to remove the temporary directory.
    fixture.fs.fail_nth(1, FaultError::Eio, |op| {
        op.kind == FaultKind::Read && op.path_contains("/deltas/part-0.delta")
    });
    let tmp = tmp_dir(SNAPSHOT_NAME);
    let removal = tmp.clone();
    fixture.fs.fail_nth(0, FaultError::Eio, move |op| {
        op.kind == FaultKind::Remove && op.path == removal
    });
    let error = fixture
        .engine
        .snapshot(fixture.options())
        .unwrap()
        .wait()
        .map(|m| m.cut_epoch)
        .expect_err("the merge fails");
    assert!(error.to_string().contains("read delta entry"), "{error}");
    assert_eq!(fixture.fs.fired().len(), 2, "{:?}", fixture.fs.fired());
    assert!(fixture.exists(&tmp), "the removal failed");
    assert_eq!(fixture.engine.poisoned(), None);
    assert!(
        fixture.exists(&marker(SNAPSHOT_NAME)),
        "the marker is the only record of the temporary directory: it must stay"
    );

    fixture.engine.close().unwrap();
    let engine = Engine::open_on(
        Arc::new(fixture.sim.clone()),
        store_dir(),
        config(fixture.page_size),
    )
    .unwrap();
    assert_eq!(
        engine.recovery_report().unfinished_snapshots_removed,
        vec![tmp.clone()]
    );
    assert!(!fixture.exists(&tmp));
    assert!(!fixture.exists(&marker(SNAPSHOT_NAME)));
    engine
        .snapshot(fixture.options())
        .expect("the name is free again")
        .wait()
        .unwrap();
}
