//! A 3-node in-process cluster: writes; a snapshot on the leader (the log purged up to it); a
//! learner that can catch up only by installing the streamed snapshot; the leader killed and a
//! new one elected; the old leader restarted from its files (store + log); at every step every
//! replica holds the same pages at the same applied index, and that state is the model of the
//! commands applied. Breaks if a snapshot's meta and data disagree, if an install misses pages,
//! if the log is purged past what a snapshot holds, or if a restart loses applied entries.

mod support;

use std::time::Instant;

use openraft::BasicNode;
use support::cluster::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_snapshot_learner_install_leader_change_and_restart_converge() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    // Chunks of 2 pages: even a small snapshot travels in many chunks.
    let mut cluster = Cluster::start(dir.path(), 3, 8192).await;

    // 1. Writes.
    let mut written: Vec<u64> = (1..=60).collect();
    let last = cluster.write(written.iter().copied()).await;
    cluster.wait_applied(last).await;
    let (_, pages) = cluster.assert_replicas_equal();
    assert_eq!(pages, support::model(written.iter().copied()));

    // 2. A snapshot on the leader; the log is purged up to it.
    let snapshot_index = cluster.snapshot().await;
    assert!(snapshot_index >= last);
    let leader = cluster.leader().await;
    let log = &cluster.nodes[&leader].log;
    let deadline = Instant::now() + support::cluster::WAIT;
    while log
        .log_ids()
        .first()
        .is_some_and(|id| id.index <= snapshot_index)
    {
        assert!(
            Instant::now() < deadline,
            "the log was not purged up to the snapshot"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // 3. More writes, then a learner: it can only catch up by install.
    written.extend(61..=80);
    cluster.write(61..=80).await;
    cluster.start_node(4, support::std_fs()).await;
    cluster.nodes[&leader]
        .raft
        .add_learner(4, BasicNode::default(), true)
        .await
        .expect("add the learner");
    let last = cluster.write(81..=90).await;
    written.extend(81..=90);
    cluster.wait_applied(last).await;
    let installs: Vec<_> = cluster
        .router
        .transfers()
        .into_iter()
        .filter(|t| t.target == 4 && t.result.is_ok())
        .collect();
    assert!(
        !installs.is_empty(),
        "the learner caught up by a snapshot install: {:?}",
        cluster.router.transfers()
    );
    assert!(installs
        .iter()
        .all(|t| t.chunk_bytes_max <= 8192 && t.chunks > 1));
    let (_, pages) = cluster.assert_replicas_equal();
    assert_eq!(pages, support::model(written.iter().copied()));

    // 4. The leader is killed; a new one is elected among the two other voters.
    cluster.stop_node(leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let last = cluster.write(91..=110).await;
    written.extend(91..=110);
    cluster.wait_applied(last).await;
    cluster.assert_replicas_equal();

    // 5. The old leader restarts from its files and catches up.
    cluster.start_node(leader, support::std_fs()).await;
    let last = cluster.write(111..=120).await;
    written.extend(111..=120);
    cluster.wait_applied(last).await;
    let (applied, pages) = cluster.assert_replicas_equal();
    assert_eq!(applied, last);
    assert_eq!(pages, support::model(written.iter().copied()));
    cluster.shutdown().await;
    println!("converged at index {applied} in {:?}", started.elapsed());
}
