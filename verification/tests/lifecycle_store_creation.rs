//! A store whose creation a power cut interrupted opens again (found by the lifecycle
//! simulation): a crash after `partitions/` and `wal/` were made but before `CONTROL` was left a
//! directory every later `Engine::open` refused as "not a deltasnap store". And the new store's
//! directory, with every parent the open created, survives a power cut once `open` returned.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

use std::path::Path;
use std::sync::Arc;

use deltasnap::vfs::{FaultPlan, SimFs, Vfs};
use deltasnap::{Config, Engine, PartitionId};

/// Deep, so that `open` creates parents too; `/data` exists and is durable before each run.
const STORE: &str = "/data/stores/east/a";

fn config() -> Config {
    Config {
        page_size: 512,
        background_checkpointer: false,
        ..Config::default()
    }
}

/// The operations a fresh `Engine::open` (creating the store) and a close make.
fn creation_ops(store: &str) -> u64 {
    let sim = SimFs::new();
    sim.create_dir_all(Path::new("/data")).unwrap();
    sim.sync_dir(Path::new("/")).unwrap();
    let first = sim.op_count();
    Engine::open_on(Arc::new(sim.clone()), store, config())
        .unwrap()
        .close()
        .unwrap();
    sim.op_count() - first
}

fn power_cut_at_every_operation_of_a_creation(store: &str) {
    let ops = creation_ops(store);
    assert!(ops > 10, "the creation makes {ops} operations");
    // `at == ops`: the power is cut after the open returned and nothing failed before.
    for at in 0..=ops {
        for seed in [1, 2] {
            let sim = SimFs::new();
            let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
            vfs.create_dir_all(Path::new("/data")).unwrap();
            vfs.sync_dir(Path::new("/")).unwrap();
            sim.set_fault_plan(FaultPlan::crash_at(sim.op_count() + at));
            let opened = Engine::open_on(Arc::clone(&vfs), store, config());
            let returned_ok = opened.is_ok();
            if let Ok(engine) = opened {
                std::mem::forget(engine); // the power is cut: no close
            }
            sim.crash(seed);
            if returned_ok {
                assert!(
                    sim.exists(Path::new(store)).unwrap(),
                    "power cut at operation {at} (seed {seed}), after open returned: the store's \
                     directory is gone"
                );
            }
            let engine = Engine::open_on(Arc::clone(&vfs), store, config()).unwrap_or_else(|e| {
                panic!("power cut at operation {at} (seed {seed}) of the creation: reopen: {e}")
            });
            engine.create_partition(PartitionId(1)).unwrap();
            engine.close().unwrap();
        }
    }
}

#[test]
fn a_power_cut_at_any_operation_of_a_store_creation_leaves_a_store_that_opens() {
    // The store directly in a durable directory: a cut can leave `partitions/` and `wal/`
    // without `CONTROL`.
    power_cut_at_every_operation_of_a_creation("/data/a");
    // Three new levels: every parent the open created must be durable once it returned.
    power_cut_at_every_operation_of_a_creation(STORE);
}
