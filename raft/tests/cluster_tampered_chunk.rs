//! A snapshot whose chunks are tampered with on their way to a learner is refused (the page
//! crc check names the page) and the learner keeps its old state; once the network is clean
//! the next transfer installs. Breaks if a tampered page is accepted, or if a refused transfer
//! changes the learner's state or stops a node.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use support::cluster::{Cluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_chunks_are_refused_and_the_learner_keeps_its_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3, 8192).await;
    let last = cluster.write(1..=40).await;
    cluster.wait_applied(last).await;
    cluster.snapshot().await;
    let leader = cluster.leader().await;

    // Every chunk to node 4 gets a flipped byte in its first page.
    cluster
        .router
        .set_chunk_filter(Some(Arc::new(|target, chunk| {
            if target == 4 {
                chunk.bytes[64] ^= 0x01;
            }
            true
        })));
    cluster.start_node(4, support::std_fs()).await;
    cluster.nodes[&leader]
        .raft
        .add_learner(4, BasicNode::default(), false)
        .await
        .expect("add the learner");
    let deadline = Instant::now() + WAIT;
    while !cluster.router.transfers().iter().any(|t| t.target == 4) {
        assert!(Instant::now() < deadline, "no transfer to the learner");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = cluster.router.transfers();
    assert!(
        refused.iter().filter(|t| t.target == 4).all(|t| t
            .result
            .as_ref()
            .is_err_and(|e| e.contains("the manifest says"))),
        "{refused:?}"
    );
    // The learner still holds its old state, and runs.
    let (applied, payloads) = cluster.nodes[&4].state_machine.read_state().expect("read");
    assert_eq!(applied, None);
    assert!(support::pages_of(&payloads).is_empty());
    assert!(cluster.nodes[&4]
        .raft
        .metrics()
        .borrow()
        .running_state
        .is_ok());

    // A clean network: the next transfer installs and the learner converges.
    cluster.router.set_chunk_filter(None);
    let last = cluster.write(41..=50).await;
    cluster.wait_applied(last).await;
    let (_, pages) = cluster.assert_replicas_equal();
    assert_eq!(pages, support::model(1..=50));
    cluster.shutdown().await;
}
