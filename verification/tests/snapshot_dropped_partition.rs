//! A partition dropped after the snapshot's cut stays in the snapshot with its content at the
//! cut, and its file outlives the drop until the snapshot released it: if a checkpoint deleted
//! the file while the copier still needed it, or the snapshot followed the drop, the snapshot
//! would miss a partition that existed at its cut (S1); if the hold were never released, the
//! file would leak.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::sync::Arc;

use deltasnap::PartitionId;
use support::{
    config, store_dir, wait_checkpoint_ended, wait_until, Fixture, Gate, State, SNAPSHOT_NAME,
};

#[test]
fn a_partition_dropped_during_a_snapshot_is_in_it_and_deleted_after_it() {
    let mut fixture = Fixture::with(1024, 3, 12);
    let dropped = PartitionId(1);
    let file = store_dir().join("partitions").join("part-1.dat");
    let copier = Arc::new(Gate::default());
    let mut options = fixture.options();
    options.copy_gate = Some(copier.copy_gate());
    let snapshot = fixture.engine.snapshot(options).unwrap();
    wait_until("the copier", || copier.reached() > 0);
    let cut = snapshot.progress().cut_epoch.expect("the cut is taken");
    wait_checkpoint_ended(&fixture.engine, cut);

    // After the cut, while the copier waits: drop the partition, keep writing the others and
    // run checkpoints, each of which deletes the files of dropped partitions nobody holds.
    fixture.engine.drop_partition(dropped).unwrap();
    for round in 3..5 {
        fixture.write_pages(|page| page.partition != dropped, round);
        let outcome = fixture.engine.checkpoint().unwrap();
        assert!(outcome.epoch.is_some());
        assert!(
            fixture.exists(&file),
            "checkpoint {round} deleted a held partition file"
        );
    }
    assert!(!fixture
        .engine
        .partitions()
        .iter()
        .any(|(id, _)| *id == dropped));

    copier.open();
    let manifest = snapshot.wait().unwrap();
    assert!(
        manifest
            .partitions
            .iter()
            .any(|p| p.id == dropped.0 && p.page_count == 12),
        "the snapshot holds the partition as of its cut: {:?}",
        manifest.partition_ids()
    );
    fixture.assert_snapshot_is_the_cut(SNAPSHOT_NAME, &manifest);

    // Released: the next checkpoint that runs deletes the file.
    fixture.write_pages(|page| page.partition == PartitionId(0), 6);
    fixture.engine.checkpoint().unwrap();
    assert!(
        !fixture.exists(&file),
        "the dropped partition's file outlived the snapshot"
    );

    // And the store reopens without it.
    fixture.engine.close().unwrap();
    let engine = deltasnap::Engine::open_on(
        Arc::new(fixture.sim.clone()),
        store_dir(),
        config(fixture.page_size),
    )
    .unwrap();
    let expected = fixture
        .history
        .state_at_cut(None)
        .without_partition(dropped);
    assert!(State::read(&engine) == expected);
}
