//! A learner whose machine loses power in the middle of installing the leader's snapshot
//! restarts holding its old state (nothing) or exactly the snapshot's, never a mix, and then
//! catches up with the cluster. Breaks if an install is not atomic across a crash (RA2), or if
//! the learner's log is purged before the snapshot that covers it is durable (RA3: it would
//! restart with neither).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltasnap::vfs::{FaultPlan, SimFs, Vfs};
use openraft::BasicNode;
use support::cluster::{Cluster, WAIT};

/// Operations into the install at which the power goes (mid-restore).
const CRASH_AFTER_OPS: u64 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_crashing_mid_install_restarts_old_or_new_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3, 8192).await;
    let last = cluster.write(1..=40).await;
    cluster.wait_applied(last).await;
    let snapshot_index = cluster.snapshot().await;
    let leader = cluster.leader().await;

    // Node 4 on a file system that loses power during its first install.
    let fs = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    cluster.start_node(4, Arc::clone(&vfs)).await;
    let armed = Arc::new(AtomicBool::new(true));
    let hook_fs = fs.clone();
    let hook_armed = Arc::clone(&armed);
    cluster.nodes[&4]
        .state_machine
        .set_install_hook(Some(Arc::new(move || {
            if hook_armed.swap(false, Ordering::SeqCst) {
                hook_fs.set_fault_plan(FaultPlan::crash_at(hook_fs.op_count() + CRASH_AFTER_OPS));
            }
        })));
    cluster.nodes[&leader]
        .raft
        .add_learner(4, BasicNode::default(), false)
        .await
        .expect("add the learner");
    let deadline = Instant::now() + WAIT;
    while fs.power_cut_at().is_none() {
        assert!(
            Instant::now() < deadline,
            "the install never reached the crash point"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The crash: node 4 goes down, its disk keeps only what was durable.
    cluster.router.set_down(4, true);
    let node = cluster.nodes.remove(&4).expect("node 4");
    cluster.router.remove(4);
    let _ = node.raft.shutdown().await;
    drop(node);
    fs.crash(7);

    // Restarted from its files: old (nothing applied) or exactly the snapshot.
    cluster.start_node(4, Arc::clone(&vfs)).await;
    let (applied, payloads) = cluster.nodes[&4].state_machine.read_state().expect("read");
    match applied.map(|id| id.index) {
        None => assert!(
            support::pages_of(&payloads).is_empty(),
            "old state: no pages"
        ),
        Some(index) => {
            assert_eq!(
                index, snapshot_index,
                "a state that is neither old nor the snapshot"
            );
            assert_eq!(support::pages_of(&payloads), support::model(1..=40));
        }
    }
    println!("restarted at {applied:?}");

    // It catches up (by another install) and converges with the cluster.
    let last = cluster.write(41..=50).await;
    cluster.wait_applied(last).await;
    let (_, pages) = cluster.assert_replicas_equal();
    assert_eq!(pages, support::model(1..=50));
    cluster.shutdown().await;
}
