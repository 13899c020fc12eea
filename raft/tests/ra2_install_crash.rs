//! RA2: a crash at any I/O operation of a snapshot install leaves the node, once reopened,
//! holding exactly its old state or exactly the snapshot's, never a mix. Breaks if the install
//! restores over the live store, or commits (`CURRENT`) before the restored store is durable,
//! or if open does not discard a half-restored store.
//! `DELTASNAP_RAFT_SEEDED=install-commits-before-restore` switches the seeded bug on (the test
//! must then fail).

mod support;

use std::path::Path;
use std::sync::Arc;

use deltasnap::vfs::{FaultPlan, SimFs, Vfs};
use deltasnap_raft::{PurgeGuard, SnapshotDir, StateMachineStore, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

const OLD_LAST: u64 = 10;
const NEW_LAST: u64 = 40;
/// A bound on the install's operations, so that a change that makes it loop shows.
const OPS_MAX: u64 = 5_000;

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry<TypeConfig>> {
    range
        .map(|index| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(support::command(index)),
        })
        .collect()
}

fn open(vfs: &Arc<dyn Vfs>, dir: &str) -> StateMachineStore {
    StateMachineStore::open(
        Arc::clone(vfs),
        Path::new(dir),
        support::engine_config(),
        PurgeGuard::new(),
    )
    .expect("open the state machine")
}

/// Node B at entry OLD_LAST, with node A's snapshot at NEW_LAST received in its `incoming/`.
/// Returns B and the snapshot to install.
fn setup(
    runtime: &tokio::runtime::Runtime,
    vfs: &Arc<dyn Vfs>,
) -> (StateMachineStore, openraft::Snapshot<TypeConfig>) {
    runtime.block_on(async {
        let mut a = open(vfs, "/a");
        a.apply(entries(1..=NEW_LAST)).await.expect("apply on A");
        let snapshot = a.build_snapshot().await.expect("build on A");
        a.close().expect("close A");
        let mut b = open(vfs, "/b");
        b.apply(entries(1..=OLD_LAST)).await.expect("apply on B");
        let manifest = deltasnap_raft::transfer::manifest_bytes(vfs, &snapshot.snapshot.dir)
            .expect("manifest");
        let receiver = b
            .begin_receive(&snapshot.meta.snapshot_id, &manifest)
            .expect("begin");
        let received =
            deltasnap_raft::transfer::copy_snapshot(vfs, &snapshot.snapshot.dir, receiver, 8192)
                .expect("transfer");
        let snapshot = openraft::Snapshot {
            meta: snapshot.meta,
            snapshot: Box::new(SnapshotDir {
                vfs: Arc::clone(vfs),
                dir: received,
            }),
        };
        let _ = b.applied_state().await;
        (b, snapshot)
    })
}

#[test]
fn crash_at_every_io_of_install_leaves_old_or_new_state() {
    if std::env::var("DELTASNAP_RAFT_SEEDED").as_deref() == Ok("install-commits-before-restore") {
        deltasnap_raft::state_machine::seeded::INSTALL_COMMITS_BEFORE_RESTORE
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut old_seen = 0;
    let mut new_seen = 0;
    let mut crash_at = 0u64;
    loop {
        assert!(
            crash_at < OPS_MAX,
            "the install did not end within {OPS_MAX} operations"
        );
        let fs = SimFs::new();
        let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
        let (mut b, snapshot) = setup(&runtime, &vfs);
        let armed = fs.clone();
        b.set_install_hook(Some(Arc::new(move || {
            armed.set_fault_plan(FaultPlan::crash_at(armed.op_count() + crash_at))
        })));
        let meta = snapshot.meta.clone();
        let result = runtime.block_on(b.install_snapshot(&meta, snapshot.snapshot));
        let crashed = fs.power_cut_at().is_some();
        if !crashed {
            result.expect("an install without a crash succeeds");
        }
        drop(b);
        fs.crash(crash_at);
        let reopened = open(&vfs, "/b");
        let (last_applied, payloads) = reopened.read_state().expect("read the reopened state");
        let last = last_applied.map_or(0, |id| id.index);
        let pages = support::pages_of(&payloads);
        match last {
            OLD_LAST => {
                assert_eq!(
                    pages,
                    support::model(1..=OLD_LAST),
                    "crash at op {crash_at}: old log id, pages not the old state"
                );
                old_seen += 1;
            }
            NEW_LAST => {
                assert_eq!(
                    pages,
                    support::model(1..=NEW_LAST),
                    "crash at op {crash_at}: new log id, pages not the snapshot's"
                );
                new_seen += 1;
            }
            other => panic!("crash at op {crash_at}: last_applied {other} is neither old nor new"),
        }
        // The current snapshot is never ahead of the state it is current for.
        let current = runtime
            .block_on(reopened.clone().get_current_snapshot())
            .expect("current snapshot");
        let current_last = current
            .and_then(|c| c.meta.last_log_id)
            .map_or(0, |id| id.index);
        assert!(
            current_last <= last,
            "crash at op {crash_at}: snapshot at {current_last} is ahead of the state at {last}"
        );
        if last == NEW_LAST {
            // An install that committed is finished: its snapshot is the current one (so a
            // log that openraft purges up to it is covered, RA3).
            assert_eq!(
                current_last, NEW_LAST,
                "crash at op {crash_at}: installed, but its snapshot is not current"
            );
        }
        reopened.close().expect("close");
        if !crashed {
            assert_eq!(last, NEW_LAST, "the install completed");
            break;
        }
        crash_at += 1;
    }
    // Both outcomes happen: the crash points span the commit.
    assert!(
        old_seen > 0 && new_seen > 0,
        "old {old_seen}, new {new_seen}"
    );
    println!("{crash_at} crash points: {old_seen} old, {new_seen} new");
}
