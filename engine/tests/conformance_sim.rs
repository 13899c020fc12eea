//! The engine against a `BTreeMap` reference on SimFs, with random writes, allocations, syncs,
//! checkpoints, crashes (dropping or tearing unsynced writes), crashes in the middle of a
//! checkpoint, and reopens: after every reopen the state is the reference after some prefix of the
//! history that contains every synced write (R1).

mod support;

use std::sync::Arc;

use deltasnap::vfs::{FaultPlan, SimFs};
use deltasnap::{Config, Engine, PageId, PartitionId};
use proptest::prelude::*;
use support::{proptest_config, StoreState};

const PARTITIONS: u32 = 3;
const PAGE_SIZE: u32 = 512;

#[derive(Debug, Clone)]
enum Op {
    Write {
        partition: u32,
        page: u32,
        offset: u16,
        len: u8,
        byte: u8,
    },
    Allocate {
        partition: u32,
    },
    MetadataPut {
        key: u8,
        value: u8,
    },
    Sync,
    Checkpoint,
    Crash {
        seed: u64,
    },
    /// A power cut at the checkpoint's `at`-th I/O operation (or after it, if it has fewer).
    CrashInCheckpoint {
        at: u8,
        seed: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..PARTITIONS, 0..16u32, 0..464u16, 1..32u8, any::<u8>())
            .prop_map(|(partition, page, offset, len, byte)| Op::Write { partition, page, offset, len, byte }),
        3 => (0..PARTITIONS).prop_map(|partition| Op::Allocate { partition }),
        1 => (0..3u8, any::<u8>()).prop_map(|(key, value)| Op::MetadataPut { key, value }),
        2 => Just(Op::Sync),
        2 => Just(Op::Checkpoint),
        1 => any::<u64>().prop_map(|seed| Op::Crash { seed }),
        1 => (0..48u8, any::<u64>()).prop_map(|(at, seed)| Op::CrashInCheckpoint { at, seed }),
    ]
}

fn config() -> Config {
    Config {
        page_size: PAGE_SIZE,
        memory_budget_bytes: 16 * PAGE_SIZE as u64,
        background_checkpointer: false,
        wal_segment_bytes: 8 * 1024,
        ..Config::default()
    }
}

/// Applies a successful op to the reference state.
fn apply(state: &mut StoreState, op: &Op) {
    match *op {
        Op::Write {
            partition,
            page,
            offset,
            len,
            byte,
        } => {
            let pages = state.partitions.get_mut(&PartitionId(partition)).unwrap();
            let page = &mut pages[page as usize];
            page[offset as usize..offset as usize + len as usize].fill(byte);
        }
        Op::Allocate { partition } => {
            let payload = (PAGE_SIZE - 16) as usize;
            state
                .partitions
                .get_mut(&PartitionId(partition))
                .unwrap()
                .push(vec![0; payload]);
        }
        Op::MetadataPut { key, value } => {
            state.metadata.insert(vec![key], vec![value]);
        }
        Op::Sync | Op::Checkpoint | Op::Crash { .. } | Op::CrashInCheckpoint { .. } => {}
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    #[cfg(deltasnap_testing)]
    deltasnap_verification::kill::iteration();
    let sim = SimFs::new();
    let vfs: Arc<dyn deltasnap::vfs::Vfs> = Arc::new(sim.clone());
    let dir = std::path::Path::new("/store");
    let mut engine = Engine::open_on(Arc::clone(&vfs), dir, config()).unwrap();
    for p in 0..PARTITIONS {
        engine.create_partition(PartitionId(p)).unwrap();
    }
    engine.checkpoint().unwrap();
    // Reference states after each mutating op since the last reopen; `durable` indexes the
    // first state recovery may return (everything synced).
    let mut history: Vec<StoreState> = vec![StoreState::read(&engine)];
    let mut durable = 0usize;
    for op in &ops {
        let mut next = history.last().unwrap().clone();
        match *op {
            Op::Write {
                partition,
                page,
                offset,
                len,
                byte,
            } => {
                let count = next.partitions[&PartitionId(partition)].len() as u32;
                if count == 0 {
                    continue;
                }
                let op = Op::Write {
                    partition,
                    page: page % count,
                    offset,
                    len,
                    byte,
                };
                engine
                    .write(
                        PageId::new(PartitionId(partition), page % count),
                        offset as usize,
                        &vec![byte; len as usize],
                    )
                    .unwrap();
                apply(&mut next, &op);
                history.push(next);
            }
            Op::Allocate { partition } => {
                engine.allocate_page(PartitionId(partition)).unwrap();
                apply(&mut next, op);
                history.push(next);
            }
            Op::MetadataPut { key, value } => {
                engine.metadata_put(&[key], &[value]).unwrap();
                apply(&mut next, op);
                history.push(next);
            }
            Op::Sync => {
                engine.sync().unwrap();
                durable = history.len() - 1;
            }
            Op::Checkpoint => {
                engine.checkpoint().unwrap();
                durable = history.len() - 1;
                prop_assert_eq!(&StoreState::read(&engine), history.last().unwrap());
            }
            Op::Crash { .. } | Op::CrashInCheckpoint { .. } => {
                let seed = match *op {
                    Op::CrashInCheckpoint { at, seed } => {
                        sim.set_fault_plan(FaultPlan::crash_at(sim.op_count() + at as u64));
                        if engine.checkpoint().is_ok() {
                            durable = history.len() - 1;
                        }
                        seed
                    }
                    Op::Crash { seed } => seed,
                    _ => unreachable!(),
                };
                std::mem::forget(engine);
                sim.crash(seed);
                engine = Engine::open_on(Arc::clone(&vfs), dir, config()).unwrap();
                let recovered = StoreState::read(&engine);
                let prefix = (durable..history.len())
                    .rev()
                    .find(|&k| history[k] == recovered);
                prop_assert!(
                    prefix.is_some(),
                    "after crash (seed {}) the recovered state is no prefix of the history from the last sync (index {}) on; recovered {:?}",
                    seed, durable, recovered
                );
                history.truncate(prefix.unwrap() + 1);
                let state = history.pop().unwrap();
                history = vec![state];
                durable = 0;
            }
        }
    }
    prop_assert_eq!(&StoreState::read(&engine), history.last().unwrap());
    engine.close().unwrap();
    drop(engine);
    let engine = Engine::open_on(vfs, dir, config()).unwrap();
    prop_assert_eq!(
        &StoreState::read(&engine),
        history.last().unwrap(),
        "clean close and reopen"
    );
    Ok(())
}

fn check(config: proptest::test_runner::Config) {
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..120))| {
        run(ops)?;
    });
}

#[test]
fn engine_conforms_to_the_reference_across_crashes() {
    check(proptest_config(48));
}

/// Kill mode (see `deltasnap_verification::kill`; needs `--cfg deltasnap_testing`): run alone,
/// `--exact kill_matrix`. No shrinking: the cell ends at the first failing case.
#[cfg(deltasnap_testing)]
#[test]
fn kill_matrix() {
    use deltasnap_verification::kill;
    let mut config = proptest_config(48);
    config.max_shrink_iters = 0;
    kill::run_requested("proptest", || check(config));
}
