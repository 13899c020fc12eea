//! Loom over the redo log's group commit (engine `wal/mod.rs`, on SimFs): if a `sync` could
//! return before an fsync covered the record its caller appended, a write whose `sync` returned
//! could be lost at a crash (R1).
#![cfg(deltasnap_loom)]

use std::path::Path;

use deltasnap::bugs::{self, kill, Bug};
use deltasnap::sync::Arc;
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::wal::{Record, Wal, WalConfig};
use deltasnap::PartitionId;

const SEGMENT: &str = "/wal/00000000000000000000.log";
/// format.md §3: the segment header before the first record.
const SEGMENT_HEADER_BYTES: u64 = 32;

fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        // Two appenders, each append + sync: bound 2 covers a leader preempted between its
        // buffer write and its fsync while the other caller arrives, in about a second.
        builder.preemption_bound = Some(2);
    }
    builder.check(move || {
        kill::iteration();
        f()
    });
}

/// Two threads append one record each and sync; when `sync` returns, the durable bytes of the
/// segment must reach past the caller's record.
fn two_appenders_sync() {
    let sim = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
    vfs.create_dir_all(Path::new("/wal")).unwrap();
    vfs.sync_dir(Path::new("/")).unwrap();
    let (wal, _) = Wal::open(Arc::clone(&vfs), Path::new("/wal"), WalConfig::new(512), 0).unwrap();
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let (wal, sim) = (Arc::clone(&wal), sim.clone());
            loom::thread::spawn(move || {
                let record = Record::CreatePartition {
                    epoch: 1,
                    partition: PartitionId(t),
                };
                let lsn = wal.append(&record).unwrap();
                let end = lsn + record.encoded_len() as u64;
                wal.sync().unwrap();
                let durable = sim.durable_len(Path::new(SEGMENT)).unwrap();
                assert!(
                    durable >= SEGMENT_HEADER_BYTES + end,
                    "R1: sync returned but the record ending at LSN {end} is not durable ({durable} durable bytes)"
                );
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn a_returned_sync_covers_the_callers_record() {
    bugs::set(Bug::SyncSkipsWaitForLeader, false);
    model(two_appenders_sync);
}

#[test]
#[should_panic(expected = "R1")]
fn seeded_bug_sync_not_waiting_for_the_leader_is_caught() {
    bugs::set(Bug::SyncSkipsWaitForLeader, true);
    model(two_appenders_sync);
}

/// Kill mode (see `deltasnap::bugs::kill`): run alone, `--exact kill_matrix`.
#[test]
fn kill_matrix() {
    if let Some(bug) = kill::requested() {
        println!("{}", kill::cell("loom", bug, || model(two_appenders_sync)));
    }
}
